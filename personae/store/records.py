"""The plain values the store takes and gives back.

The orchestrator describes what happened (a run started, a model was called, a turn was spoken)
with these frozen values and hands them to the store; ids and rows belong to the store alone.
What the store gives back that is not an ORM row (totals, search hits) is a value too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from personae.llm.base import ChatMessage, Usage

NO_USAGE = Usage(prompt_tokens=0, evaluated_tokens=0, completion_tokens=0)


@dataclass(frozen=True)
class CallRecord:
    """One model call as the orchestrator saw it."""

    purpose: str
    persona: str | None
    backend: str
    model: str
    options: dict[str, Any]
    prompt: tuple[ChatMessage, ...]
    manifest: list[dict[str, Any]]
    response: str | None
    usage: Usage = NO_USAGE  # what the server reported; zero until it answered
    wall_ns: int = 0  # as Personae saw it, server time and all
    done_reason: str | None = None
    schema: dict[str, Any] | None = None
    error: str | None = None
    turn: int | None = None


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    persona: str
    phase: str | None
    content: str
    thinking: str | None = None
    raw: str | None = None
    cut: str | None = None
    structured: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewRun:
    scenario_name: str
    scenario_path: str | None
    scenario_yaml: str
    backend: str
    model: str
    layout: str
    num_ctx: int
    max_turns: int
    seed: int | None
    personas: list[tuple[str, int | None, str, dict[str, Any]]] = field(default_factory=list)
    # (name, roster position or None, source, resolved definition)
    parent_run_id: int | None = None  # set for a fork: the run it continues
    fork_turn: int | None = None  # the parent's last turn it copied
    variables: dict[str, str] | None = None  # values of the scenario's `vars:`, if it has any
    options: dict[str, Any] | None = None  # -o overrides, typed
    # A sweep's variant (``batch_variants.id``) this run is for: linked in the same transaction
    # that creates the run, so a killed sweep never leaves a run its variant does not know.
    batch_variant_id: int | None = None


@dataclass(frozen=True)
class RunTotals:
    """A run's counters as stored in its ``runs`` row."""

    turns: int
    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CommittedTurn:
    """What committing a turn returns: the message's id, and the run's totals as that same
    transaction left them (so the run loop need not read the run row back)."""

    message_id: int
    totals: RunTotals


@dataclass(frozen=True)
class SearchHit:
    run_id: int
    turn: int
    persona: str
    snippet: str
    text: str = ""  # the whole message, so identical hits (a fork's copied turns) can be grouped


@dataclass(frozen=True)
class MemoryHit:
    run_id: int
    node_id: int
    kind: str
    turn: int | None
    snippet: str
    text: str = ""  # the node's whole text: documents re-imported by every run are one passage
