"""The phases policy: ordered phases, each with its speakers × rounds or a policy of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from personae.config.models import Phase, PhasesPolicy
from personae.orchestrator.policies.protocol import Policy
from personae.orchestrator.policies.round_robin import Slots
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance


@dataclass(frozen=True)
class _Stage:
    phase: Phase
    policy: Policy
    mode_text: str | None

    def next_speaker(self, history: Sequence[Utterance], since: int, taken: int) -> TurnPlan | None:
        if self.phase.turns is not None and taken >= self.phase.turns:
            return None
        if isinstance(self.policy, Slots):  # the common case, without rescanning the scope
            slots = self.policy.speakers
            return TurnPlan(slots[taken]) if taken < len(slots) else None
        return self.policy.next_speaker(history, since)


class Phases:
    """Ordered phases; in each, its speakers take turns for ``rounds`` rounds, or its own policy
    runs until done (or until the phase's ``turns`` are used).

    Where each phase began is not stored anywhere: it is re-derived by replaying the transcript
    through the phases (a phase is over when its policy has nothing left to say), so nested
    policies of any length stay resumable from the database alone.
    """

    def __init__(
        self,
        config: PhasesPolicy,
        policies: Sequence[Policy],
        modes: Mapping[str, str] | None = None,
    ) -> None:
        """``policies``: each phase's own, in order (``slots_for`` where it names speakers); the
        factory builds them, so a phase may hold any policy without this module knowing them."""
        modes = modes or {}
        self.stages = [
            _Stage(phase, policy, modes.get(phase.mode) if phase.mode else None)
            for phase, policy in zip(config.phases, policies, strict=True)
        ]
        self.repeat = config.repeat

    def _advance(self, index: int) -> int | None:
        index += 1
        if index < len(self.stages):
            return index
        return 0 if self.repeat else None

    def _locate(self, history: Sequence[Utterance], since: int) -> tuple[int, int, int] | None:
        """(stage index, where its scope starts, persona turns it has taken)."""
        index, start, taken = 0, since, 0
        for i in range(since, len(history)):
            if history[i].persona == HUMAN:
                continue
            for _ in range(len(self.stages) + 1):
                if self.stages[index].next_speaker(history[:i], start, taken) is not None:
                    break
                following = self._advance(index)
                if following is None:
                    return None
                index, start, taken = following, i, 0
            else:
                return None
            taken += 1
        return index, start, taken

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        located = self._locate(history, since)
        if located is None:
            return None
        index, start, taken = located
        for _ in range(len(self.stages) + 1):
            stage = self.stages[index]
            speaker = stage.next_speaker(history, start, taken)
            if speaker is not None:
                return _in_phase(speaker, stage)
            following = self._advance(index)
            if following is None:
                return None
            index, start, taken = following, len(history), 0
        return None

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        return "phases_complete"


def _in_phase(speaker: TurnPlan, stage: _Stage) -> TurnPlan:
    """Label a speaker with its phase (``outer/inner`` when phases nest) and add the mode."""
    name = stage.phase.name
    phase = f"{name}/{speaker.phase}" if speaker.phase else name
    if speaker.mode is not None or stage.phase.mode is None:
        return replace(speaker, phase=phase)
    instructions = "\n".join(t for t in (stage.mode_text, speaker.instructions) if t)
    meta = {**(speaker.meta or {}), "mode": stage.phase.mode}
    return replace(
        speaker, phase=phase, mode=stage.phase.mode, instructions=instructions or None, meta=meta
    )




def slots_for(phase: Phase) -> Slots:
    """A phase that names its speakers: each of them in order, ``rounds`` times."""
    assert phase.speakers is not None
    return Slots([s for _ in range(phase.rounds) for s in phase.speakers])
