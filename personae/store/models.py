"""The database, as users query it with plain SQL.

A run is one deliberation. ``run_personas`` freezes the persona definitions it used, so a run can
be understood (and resumed or replayed) after the YAML files change. ``messages`` is the transcript:
one row per turn, with the model's raw reply kept beside what the other personas were shown.
``llm_calls`` is one row per model call — a persona's turn, and later collapses and speaker
selection — with the exact prompt, what went into it and why (the manifest), and the server's own
token counts. ``evaluated_tokens`` is the number the cache-friendly layout exists to shrink.
``memory_nodes`` and ``memory_edges`` are the memory graph: every message and persona, and what
collapses made of them (summaries by level, facts, decisions, open questions, each linked to the
turns it came from), plus imported documents; items are never deleted, only closed (``valid_to``)
by a ``supersedes`` or ``contradicts`` edge.

Column comments below say why each column exists; the schema tables of docs/storage.md are
generated from them and a test keeps the two in step. The schema itself changes only through
Alembic revisions in ``migrations/versions`` (append-only; never edit one that shipped).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = {"comment": "one row per deliberation, with its settings, status and totals"}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario_name: Mapped[str] = mapped_column(String, comment="the scenario's `name:`")
    scenario_path: Mapped[str | None] = mapped_column(Text, comment="file it was loaded from")
    scenario_yaml: Mapped[str] = mapped_column(
        Text, comment="the scenario file exactly as run, so resume and replay need no files"
    )
    status: Mapped[str] = mapped_column(
        String, comment="running | completed | failed | interrupted"
    )
    stop_reason: Mapped[str | None] = mapped_column(
        Text, comment="why a run ended: max_turns, stop_phrase, phases_complete, error, ..."
    )
    error: Mapped[str | None] = mapped_column(Text, comment="the failure message, if failed")
    backend: Mapped[str] = mapped_column(String, comment="embedded | ollama | openai | replay")
    model: Mapped[str] = mapped_column(Text, comment="model name or GGUF file that played all personas")
    layout: Mapped[str] = mapped_column(
        String, comment="transcript | named | cache_friendly | classic: how prompts were laid out"
    )
    num_ctx: Mapped[int] = mapped_column(Integer, comment="the window served, in tokens")
    max_turns: Mapped[int] = mapped_column(Integer, comment="effective limit (scenario or --max-turns)")
    seed: Mapped[int | None] = mapped_column(Integer, comment="sampling seed, if fixed")
    started_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, comment="UTC; null while running")
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        DateTime, comment="UTC; refreshed each turn, to tell a dead process from a live one"
    )
    pid: Mapped[int | None] = mapped_column(Integer, comment="process that is running it")
    turns: Mapped[int] = mapped_column(Integer, default=0, comment="messages committed")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, comment="sum over llm_calls")
    evaluated_tokens: Mapped[int] = mapped_column(Integer, default=0, comment="sum over llm_calls")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, comment="sum over llm_calls")
    personae_version: Mapped[str] = mapped_column(String, comment="version that started the run")
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), comment="the run this one was forked from"
    )
    fork_turn: Mapped[int | None] = mapped_column(
        Integer, comment="last turn copied from the parent when forked"
    )
    variables: Mapped[dict[str, str] | None] = mapped_column(
        JSON, comment="values of the scenario's `vars:` the run used (--var or defaults); "
        "resume and replay fill the stored YAML with them"
    )
    options: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="option overrides the run was started with (-o KEY VALUE), typed"
    )


class RunPersona(Base):
    __tablename__ = "run_personas"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        {"comment": "the persona definitions a run used, frozen at its start"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True, comment="the run"
    )
    name: Mapped[str] = mapped_column(String, comment="the persona's name")
    position: Mapped[int | None] = mapped_column(
        Integer, comment="place in the roster; null for helpers such as a summarizer off-roster"
    )
    source: Mapped[str] = mapped_column(Text, comment="inline | a file path | builtin")
    definition: Mapped[dict[str, Any]] = mapped_column(
        JSON, comment="the persona after `extends` was applied, exactly as used"
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("run_id", "turn"),
        {"comment": "the transcript: one row per turn; full-text indexed in messages_fts"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), comment="the run")
    turn: Mapped[int] = mapped_column(Integer, comment="1, 2, 3 … within the run, no gaps")
    persona: Mapped[str] = mapped_column(String, comment="who spoke (User for human input)")
    phase: Mapped[str | None] = mapped_column(String, comment="phase name, if the policy has phases")
    content: Mapped[str] = mapped_column(Text, comment="what the other personas are shown")
    thinking: Mapped[str | None] = mapped_column(
        Text, comment="<thinking> parts; hidden from others unless the persona shows them"
    )
    raw: Mapped[str | None] = mapped_column(Text, comment="the model's reply before parsing")
    cut: Mapped[str | None] = mapped_column(
        Text, comment="text removed because the reply went on speaking as another persona"
    )
    structured: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="validated JSON for personas with an output_schema"
    )
    meta: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="how the turn came about: selector reason, fallback, mode, verdict links"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")


class LLMCall(Base):
    __tablename__ = "llm_calls"
    __table_args__ = (
        Index("ix_llm_calls_run", "run_id", "id"),
        {"comment": "every model call: prompt, manifest, response, token counts, durations"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), comment="the run")
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), comment="the turn this call produced"
    )
    turn: Mapped[int | None] = mapped_column(Integer, comment="turn the call belongs to")
    purpose: Mapped[str] = mapped_column(
        String, comment="turn | retry | collapse | select | importance (a memory item's 1-10 rating)"
    )
    persona: Mapped[str | None] = mapped_column(String, comment="persona the model played")
    backend: Mapped[str] = mapped_column(String, comment="backend that served the call")
    model: Mapped[str] = mapped_column(Text, comment="model that answered")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, comment="sampling options sent")
    prompt: Mapped[list[dict[str, str]]] = mapped_column(
        JSON, comment="the chat messages sent, [{role, content}]"
    )
    prompt_hash: Mapped[str] = mapped_column(
        String, comment="sha256 of prompt+schema; replay compares it"
    )
    schema: Mapped[dict[str, Any] | None] = mapped_column(
        "json_schema", JSON, comment="JSON Schema the reply was constrained to"
    )
    manifest: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, comment="what went into the prompt, section by section, with token counts"
    )
    response: Mapped[str | None] = mapped_column(Text, comment="the reply text as received")
    done_reason: Mapped[str | None] = mapped_column(String, comment="stop | length")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, comment="tokens in the prompt")
    evaluated_tokens: Mapped[int] = mapped_column(
        Integer, default=0, comment="prompt tokens the server evaluated (not reused from its cache)"
    )
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, comment="tokens generated")
    total_ns: Mapped[int] = mapped_column(Integer, default=0, comment="server-side total, ns")
    load_ns: Mapped[int] = mapped_column(Integer, default=0, comment="model load time, ns")
    prompt_eval_ns: Mapped[int] = mapped_column(Integer, default=0, comment="prompt evaluation, ns")
    eval_ns: Mapped[int] = mapped_column(Integer, default=0, comment="generation, ns")
    wall_ns: Mapped[int] = mapped_column(Integer, default=0, comment="as seen by Personae, ns")
    error: Mapped[str | None] = mapped_column(Text, comment="why the call failed, if it did")
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")


class MemoryNode(Base):
    """A node of a run's memory graph. Messages and personas appear here too, so every edge has
    both ends in one table and the whole graph loads with two queries."""

    __tablename__ = "memory_nodes"
    __table_args__ = (
        Index("ix_memory_nodes_run_kind", "run_id", "kind"),
        {
            "comment": "the memory graph's nodes: messages, personas, summaries, facts, "
            "decisions, questions, documents; full-text indexed in memory_fts"
        },
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), comment="the run")
    kind: Mapped[str] = mapped_column(
        String,
        comment="message | persona | summary | fact | decision | question | document | section "
        "| chunk | task (a task loop's task; data: id, status; valid_to: the turn that worked it)",
    )
    level: Mapped[int | None] = mapped_column(
        Integer, comment="summary level (1 = summarizes messages, 2 = summaries of those …); "
        "heading depth for a section"
    )
    text: Mapped[str] = mapped_column(
        Text, comment="what the node says (a message's opening words; a persona's name)"
    )
    data: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="details: source turns, span, pinned, how a collapse was produced, file path"
    )
    turn: Mapped[int | None] = mapped_column(
        Integer, comment="turn after which the node was made (0: before the first turn)"
    )
    valid_from: Mapped[int | None] = mapped_column(
        Integer, comment="facts and decisions: turn from which the item holds"
    )
    valid_to: Mapped[int | None] = mapped_column(
        Integer, comment="turn at which a later item superseded or contradicted it; null: holds"
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True,
        comment="for message nodes: the message",
    )


class MemoryEdge(Base):
    __tablename__ = "memory_edges"
    __table_args__ = (
        Index("ix_memory_edges_run", "run_id"),
        {"comment": "typed edges between memory nodes, with the turn that made them"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), comment="the run")
    src: Mapped[int] = mapped_column(
        ForeignKey("memory_nodes.id", ondelete="CASCADE"), index=True, comment="edge source node"
    )
    dst: Mapped[int] = mapped_column(
        ForeignKey("memory_nodes.id", ondelete="CASCADE"), index=True, comment="edge target node"
    )
    kind: Mapped[str] = mapped_column(
        String,
        comment="authored_by | replies_to | summarizes | derived_from | supports | contradicts "
        "| supersedes | part_of",
    )
    turn: Mapped[int | None] = mapped_column(Integer, comment="turn after which the edge was made")


class Batch(Base):
    """A sweep (``personae batch SWEEP.yaml``): many runs of the same question under varied
    settings. The sweep file is kept whole, so ``batch resume`` needs no file."""

    __tablename__ = "batches"
    __table_args__ = {"comment": "one row per sweep: its file as run, status and process"}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, comment="the sweep's `name:`")
    sweep_path: Mapped[str | None] = mapped_column(
        Text, comment="file it was loaded from; scenario paths in it resolve from its folder"
    )
    sweep_yaml: Mapped[str] = mapped_column(
        Text, comment="the sweep file exactly as run, so `batch resume` needs no file"
    )
    status: Mapped[str] = mapped_column(
        String, comment="running | completed | failed | interrupted (failed: some run failed)"
    )
    variants: Mapped[int] = mapped_column(Integer, comment="how many variants the sweep expands to")
    pid: Mapped[int | None] = mapped_column(
        Integer, comment="process running it, to refuse a second `batch resume` while it lives"
    )
    started_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    finished_at: Mapped[datetime | None] = mapped_column(
        DateTime, comment="UTC; null while running or after a kill"
    )


class BatchVariant(Base):
    """One point of a sweep: a scenario with one value on every axis. Its run is linked in the
    transaction that creates the run, so a kill never leaves a variant run twice."""

    __tablename__ = "batch_variants"
    __table_args__ = (
        UniqueConstraint("batch_id", "key"),
        {"comment": "the variants of a sweep, each linked to the run that ran it"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), index=True, comment="the sweep"
    )
    position: Mapped[int] = mapped_column(Integer, comment="order of expansion, from 0")
    key: Mapped[str] = mapped_column(
        Text, comment="stable name of the variant, e.g. cache-review|layout=named|seed=1"
    )
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSON, comment="scenario, endpoint and every axis value the variant runs with"
    )
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True,
        comment="the run of this variant; null until it starts (or after the run was deleted)",
    )


# The same tables as SQLAlchemy Core sees them: the per-turn writes bypass the ORM (its unit of
# work was most of a turn's cost) and run statements built on these, with the columns' own types.
RUNS: Table = Run.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
CALLS: Table = LLMCall.__table__  # type: ignore[assignment]
NODES: Table = MemoryNode.__table__  # type: ignore[assignment]
EDGES: Table = MemoryEdge.__table__  # type: ignore[assignment]
BATCHES: Table = Batch.__table__  # type: ignore[assignment]
VARIANTS: Table = BatchVariant.__table__  # type: ignore[assignment]
