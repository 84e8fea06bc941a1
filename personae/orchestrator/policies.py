"""Who speaks next. A policy is one method over the committed transcript, so it needs no state of
its own and a resumed run continues exactly where it stopped.

``next_speaker(history, since)`` sees the whole transcript; a policy nested in a phase owns only
``history[since:]`` (its scope) but may read what came before — a router's rules look at the last
message whoever wrote it. Policies never call a model: where a router leaves the choice to the
model it returns the candidates (``Speaker.choices``) and the run loop asks the selector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from personae.config.models import (
    Phase,
    PhasesPolicy,
    ReflectPolicy,
    RoundRobinPolicy,
    RouterPolicy,
)
from personae.config.models import (
    Policy as PolicyConfig,
)
from personae.config.names import HUMAN  # the input author; policies count only persona turns
from personae.orchestrator.state import Speaker, Utterance


class Policy(Protocol):
    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> Speaker | None:
        """The next persona to speak, or None when the policy has nothing left to say."""
        ...


def persona_turns(history: Sequence[Utterance]) -> int:
    """Turns taken by personas; scripted or human input does not move a policy along."""
    return sum(1 for u in history if u.persona != HUMAN)


def finish_reason(policy: Policy, history: Sequence[Utterance]) -> str:
    """Why a policy that returned None is done: stored as the run's stop_reason."""
    reason = getattr(policy, "finish_reason", None)
    return reason(history) if reason is not None else "phases_complete"


class RoundRobin:
    def __init__(self, speakers: Sequence[str]) -> None:
        self.speakers = list(speakers)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> Speaker | None:
        return Speaker(self.speakers[persona_turns(history[since:]) % len(self.speakers)])


class Slots:
    """A fixed sequence of speakers (a phase's speakers × rounds), then done."""

    def __init__(self, speakers: Sequence[str]) -> None:
        self.speakers = list(speakers)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> Speaker | None:
        index = persona_turns(history[since:])
        return Speaker(self.speakers[index]) if index < len(self.speakers) else None


@dataclass(frozen=True)
class _Stage:
    phase: Phase
    policy: Policy
    mode_text: str | None

    def next_speaker(self, history: Sequence[Utterance], since: int, taken: int) -> Speaker | None:
        if self.phase.turns is not None and taken >= self.phase.turns:
            return None
        if isinstance(self.policy, Slots):  # the common case, without rescanning the scope
            slots = self.policy.speakers
            return Speaker(slots[taken]) if taken < len(slots) else None
        return self.policy.next_speaker(history, since)


class Phases:
    """Ordered phases; in each, its speakers take turns for ``rounds`` rounds, or its own policy
    runs until done (or until the phase's ``turns`` are used).

    Where each phase began is not stored anywhere: it is re-derived by replaying the transcript
    through the phases (a phase is over when its policy has nothing left to say), so nested
    policies of any length stay resumable from the database alone.
    """

    def __init__(
        self, config: PhasesPolicy, roster: Sequence[str], modes: Mapping[str, str] | None = None
    ) -> None:
        modes = modes or {}
        self.stages = [
            _Stage(
                phase,
                Slots([s for _ in range(phase.rounds) for s in phase.speakers])
                if phase.speakers is not None
                else make_policy(phase.policy, roster, modes),  # type: ignore[arg-type]
                modes.get(phase.mode) if phase.mode else None,
            )
            for phase in config.phases
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

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> Speaker | None:
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


def _in_phase(speaker: Speaker, stage: _Stage) -> Speaker:
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


def make_policy(
    config: PolicyConfig, roster: Sequence[str], modes: Mapping[str, str] | None = None
) -> Policy:
    """``modes``: mode name -> instructions (``config.modes.mode_table``) for phases with a mode."""
    from personae.orchestrator.reflect import Reflect
    from personae.orchestrator.router import Router

    if isinstance(config, PhasesPolicy):
        return Phases(config, roster, modes)
    if isinstance(config, RouterPolicy):
        return Router(config, roster)
    if isinstance(config, ReflectPolicy):
        return Reflect(config)
    assert isinstance(config, RoundRobinPolicy)
    return RoundRobin(config.speakers or roster)
