"""The values the run loop passes around. Everything a policy or a stop rule needs is derivable
from the committed transcript, which is what makes a run resumable from the database alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

# The input author, shared here with the loop's other names; policies count only persona turns.
from personae.config.names import HUMAN as HUMAN
from personae.llm.base import Usage
from personae.store.records import TurnRecord


@dataclass(frozen=True)
class Utterance:
    """A committed message as the orchestrator sees it."""

    turn: int
    persona: str
    phase: str | None
    content: str
    thinking: str | None = None
    id: int | None = None  # the messages.id once stored
    structured: dict[str, Any] | None = None  # messages.structured: a verdict, a schema reply
    meta: dict[str, Any] | None = None  # messages.meta: how the turn came about


def utterance_of(record: TurnRecord, message_id: int) -> Utterance:
    """A turn as the orchestrator sees it, from what was (or is being) stored: one conversion for
    a committed turn, a committed user message and a message read back (``load_history``)."""
    return Utterance(
        turn=record.turn,
        persona=record.persona,
        phase=record.phase,
        content=record.content,
        thinking=record.thinking,
        id=message_id,
        structured=record.structured,
        meta=record.meta,
    )


@dataclass(frozen=True)
class TurnPlan:
    """Who speaks next, and how: a policy's whole answer, as plain values."""

    persona: str
    phase: str | None = None
    mode: str | None = None  # the phase's mode, recorded in messages.meta
    instructions: str | None = None  # added after the persona's own (mode, reflect role)
    schema: dict[str, Any] | None = None  # constrain this reply (a verdict); else the persona's
    template: str | None = None  # how the structured reply reads: the persona's output_template
    meta: dict[str, Any] | None = None  # goes into messages.meta (route taken, reflect links)
    # Non-empty: the rules left the choice open, and a selector picks one of these names;
    # ``persona`` is then the fallback for an invalid answer.
    choices: tuple[str, ...] = ()
    # The recipes (chain, self-ask): the prompt holds the header and this turn's cue only, no
    # memory block and no transcript; what the turn needs to see is in its instructions.
    isolated: bool = False
    # Edges from this turn's message node to stored nodes: (kind, node id), e.g. the chunk a
    # chain worker read (``derived_from``). Written in the turn's transaction.
    links: tuple[tuple[str, int], ...] = ()


_persona_of = attrgetter("persona")


def persona_turns(history: Sequence[Utterance]) -> int:
    """Turns taken by personas; scripted or human input does not move a policy along."""
    # Counted at C speed (map/attrgetter, no Python frame per turn): policies and the turn cap
    # ask for it every turn, and a run of thousands of turns must not slow down for it.
    return len(history) - sum(map(HUMAN.__eq__, map(_persona_of, history)))


@dataclass(frozen=True)
class RunSettings:
    """What the command line may override in a scenario."""

    layout: str
    max_turns: int
    num_ctx: int
    seed: int | None = None
    # Collapse measures the prompt as it will be sent (with a structured reply's schema hint).
    # Runs started before 0.2.1 measured it without the hint; they resume and replay as they ran.
    measure_prepared: bool = True
    # The reply guard calls a structured reply of placeholders a copy (and asks again), and a
    # reply cut at num_predict is read by the others up to its last complete sentence. Runs
    # started before these (resume.py::REPLY_RULES_SINCE) resume and replay as they ran.
    check_placeholders: bool = True
    trim_cut_replies: bool = True
    # The guard counts a reply's repeats of itself as copied (resume.py::SELF_COPIES_SINCE).
    check_self_copies: bool = True


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
    truncated: bool = False  # generation stopped at num_predict
    attempts: int = 1  # model calls the reply guard made for this turn
    kept: int = 0  # which of them became the message


@dataclass(frozen=True)
class Retrying:
    """The reply guard rejected an attempt at this turn and asks again (``orchestrator/guard.py``)."""

    turn: int
    persona: str
    attempt: int  # the attempt about to start, 1 for the first retry
    problems: tuple[str, ...]
    copied: float


@dataclass(frozen=True)
class InputGiven:
    """A message from User (scripted ``inputs`` or typed with --interactive) was committed."""

    utterance: Utterance


@dataclass(frozen=True)
class Collapsed:
    """Turns were collapsed into memory before the next turn (see ``orchestrator/collapse.py``)."""

    turn: int  # the collapse ran after this turn
    first: int  # the span of turns it took up
    last: int
    reason: str  # at_fraction | every_turns | phase_end
    tokens_before: int  # the next prompt before the collapse, and after it
    tokens_after: int
    kept: dict[str, int]  # what memory holds now: summaries, facts, decisions, questions
    new: dict[str, int]  # what this collapse added (summaries by level included)
    mode: str  # model | retried | fallback (the worst of its calls)
    seconds: float


@dataclass(frozen=True)
class Stopped:
    run_id: int
    status: str  # completed | failed | interrupted
    reason: str
    turns: int


Event = TurnStarted | Retrying | TurnDone | InputGiven | Collapsed | Stopped
