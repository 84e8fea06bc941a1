"""What every policy is: who speaks next, and why it has nobody left."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from personae.orchestrator.state import TurnPlan, Utterance


class Policy(Protocol):
    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        """The next persona to speak, or None when the policy has nothing left to say."""
        ...

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        """Why ``next_speaker`` returned None: stored as the run's stop_reason."""
        ...
