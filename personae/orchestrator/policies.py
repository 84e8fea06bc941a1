"""Who speaks next. A policy is one method over the committed transcript, so it needs no state of
its own and a resumed run continues exactly where it stopped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from personae.config.models import PhasesPolicy, RoundRobinPolicy
from personae.orchestrator.state import Speaker, Utterance

HUMAN = "User"


class Policy(Protocol):
    def next_speaker(self, history: Sequence[Utterance]) -> Speaker | None:
        """The next persona to speak, or None when the policy has nothing left to say."""
        ...


def persona_turns(history: Sequence[Utterance]) -> int:
    """Turns taken by personas; scripted or human input does not move a policy along."""
    return sum(1 for u in history if u.persona != HUMAN)


class RoundRobin:
    def __init__(self, speakers: Sequence[str]) -> None:
        self.speakers = list(speakers)

    def next_speaker(self, history: Sequence[Utterance]) -> Speaker | None:
        return Speaker(self.speakers[persona_turns(history) % len(self.speakers)])


class Phases:
    """Ordered phases; within one, its speakers take turns for ``rounds`` rounds."""

    def __init__(self, config: PhasesPolicy) -> None:
        self.slots = [
            Speaker(speaker, phase.name)
            for phase in config.phases
            for _ in range(phase.rounds)
            for speaker in phase.speakers
        ]
        self.repeat = config.repeat

    def next_speaker(self, history: Sequence[Utterance]) -> Speaker | None:
        index = persona_turns(history)
        if index >= len(self.slots) and not self.repeat:
            return None
        return self.slots[index % len(self.slots)]


def make_policy(config: RoundRobinPolicy | PhasesPolicy, roster: Sequence[str]) -> Policy:
    if isinstance(config, PhasesPolicy):
        return Phases(config)
    return RoundRobin(config.speakers or roster)
