"""The simplest policies: everyone in turn forever, or a fixed sequence of speakers once."""

from __future__ import annotations

from collections.abc import Sequence

from personae.orchestrator.state import TurnPlan, Utterance, persona_turns


class RoundRobin:
    def __init__(self, speakers: Sequence[str]) -> None:
        self.speakers = list(speakers)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        return TurnPlan(self.speakers[persona_turns(history[since:]) % len(self.speakers)])

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        """Never done by itself: a stop rule or a phase's ``turns`` ends it."""
        return "phases_complete"


class Slots:
    """A fixed sequence of speakers (a phase's speakers × rounds), then done."""

    def __init__(self, speakers: Sequence[str]) -> None:
        self.speakers = list(speakers)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        index = persona_turns(history[since:])
        return TurnPlan(self.speakers[index]) if index < len(self.speakers) else None

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        return "phases_complete"
