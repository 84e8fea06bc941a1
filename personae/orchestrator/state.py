"""The values the run loop passes around. Everything a policy or a stop rule needs is derivable
from the committed transcript, which is what makes a run resumable from the database alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from personae.llm.base import Usage


@dataclass(frozen=True)
class Utterance:
    """A committed message as the orchestrator sees it."""

    turn: int
    persona: str
    phase: str | None
    content: str
    thinking: str | None = None
    id: int | None = None  # the messages.id once stored


@dataclass(frozen=True)
class Speaker:
    persona: str
    phase: str | None = None


@dataclass(frozen=True)
class RunState:
    run_id: int
    history: tuple[Utterance, ...] = ()
    evaluated_tokens: int = 0
    started_monotonic: float = 0.0

    @property
    def turn(self) -> int:
        """Turns committed so far."""
        return len(self.history)


# -- events the run loop yields; the CLI renders them, tests read them ------------------------


@dataclass(frozen=True)
class TurnStarted:
    turn: int
    persona: str
    phase: str | None


@dataclass(frozen=True)
class TurnDone:
    utterance: Utterance
    usage: Usage
    seconds: float
    cut: str | None = None


@dataclass(frozen=True)
class Stopped:
    run_id: int
    status: str  # completed | failed | interrupted
    reason: str
    turns: int
    extra: dict[str, object] = field(default_factory=dict)


Event = TurnStarted | TurnDone | Stopped
