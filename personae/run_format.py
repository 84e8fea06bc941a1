"""Stored runs (and replay reports) as text, Markdown and JSON: plain functions, no terminal. The
CLI prints what they return; benchmarks and library users call them directly."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from personae.config.names import HUMAN
from personae.words import count, plural

if TYPE_CHECKING:  # a type only: `personae runs` formats rows without importing SQLAlchemy
    from personae.store.models import Message, Run
    from personae.store.quick import RunRow

RUN_FIELDS = (
    "id", "scenario_name", "status", "stop_reason", "error", "backend", "model", "layout",
    "num_ctx", "max_turns", "seed", "turns", "prompt_tokens", "evaluated_tokens",
    "completion_tokens", "started_at", "finished_at", "scenario_path", "parent_run_id", "fork_turn",
    "variables", "options",
)
MESSAGE_FIELDS = (
    "id", "turn", "persona", "phase", "content", "thinking", "cut", "structured", "meta",
    "created_at",
)


def _plain(value: Any) -> Any:
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


def run_dict(run: Run | RunRow, turns: int | None = None) -> dict[str, Any]:
    """A run row as JSON. ``turns`` counts persona turns (what ``max_turns`` counts) and
    ``messages`` every message of the transcript, User's included (``runs.turns`` in SQL)."""
    row = {name: _plain(getattr(run, name)) for name in RUN_FIELDS}
    row["messages"] = run.turns
    row["turns"] = run.turns if turns is None else turns
    return row


def turns_of(messages: Sequence[Message]) -> int:
    """Persona turns: the messages not from User."""
    return sum(1 for m in messages if m.persona != HUMAN)


def turns_phrase(turns: int, messages: int) -> str:
    """The one way a run's length is said: "3 turns", or "3 turns and 1 User message"."""
    user = messages - turns
    return count(turns, "turn") + (f" and {count(user, 'User message')}" if user > 0 else "")


def message_dict(message: Message) -> dict[str, Any]:
    return {name: _plain(getattr(message, name)) for name in MESSAGE_FIELDS}


def run_json(run: Run, messages: Sequence[Message]) -> str:
    payload = {"run": run_dict(run, turns_of(messages)), "messages": [message_dict(m) for m in messages]}
    return json.dumps(payload, ensure_ascii=False, indent=2)


def export_json(
    run: Run, personas: Sequence[Any], messages: Sequence[Message], calls: Sequence[Any],
    nodes: Sequence[Any], edges: Sequence[Any],
) -> str:
    """Everything stored about one run, as one JSON document (``personae export``): the run row,
    the personas it used, its transcript, every model call and its memory graph."""

    from sqlalchemy import inspect

    def row(obj: Any) -> dict[str, Any]:  # stored column names (llm_calls.json_schema), as in SQL
        attrs = inspect(type(obj)).column_attrs
        return {a.columns[0].name: _plain(getattr(obj, a.key)) for a in attrs}

    payload = {
        "run": row(run),
        "personas": [row(p) for p in personas],
        "messages": [row(m) for m in messages],
        "calls": [row(c) for c in calls],
        "memory": {"nodes": [row(n) for n in nodes], "edges": [row(e) for e in edges]},
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def given_line(run: Run) -> str | None:
    """What the run was given beyond its files (``--var``, ``-o``), in one line; None if nothing."""
    parts = []
    if run.variables:
        parts.append("vars: " + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in run.variables.items()))
    if run.options:
        parts.append("options: " + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in run.options.items()))
    return " · ".join(parts) or None


def run_markdown(run: Run, messages: Sequence[Message], *, thoughts: bool = False) -> str:
    lines = [
        f"# Run {run.id}: {run.scenario_name}",
        "",
        f"- status: {run.status}" + (f" ({run.stop_reason})" if run.stop_reason else ""),
        f"- length: {turns_phrase(turns_of(messages), run.turns)}",
        f"- model: {run.model} ({run.backend}), layout {run.layout}, window {run.num_ctx}",
        f"- tokens: {run.prompt_tokens} prompt, {run.evaluated_tokens} evaluated, "
        f"{run.completion_tokens} completion",
    ]
    given = given_line(run)
    lines += [f"- {given}", ""] if given else [""]
    for m in messages:
        phase = f" · {m.phase}" if m.phase else ""
        lines += [f"## {m.turn}. {m.persona}{phase}", ""]
        if thoughts and m.thinking:
            lines += ["> " + line for line in m.thinking.splitlines()] + [""]
        lines += [(m.content or "_(empty reply)_") + marks(m), ""]
    return "\n".join(lines)


def marks(m: Message) -> str:
    """What a reader should know about how a message came about: cut short at num_predict, or
    asked for again by the reply guard."""
    meta = m.meta or {}
    marks = []
    if meta.get("truncated"):
        marks.append("cut at num_predict")
    guard = meta.get("guard") or {}
    if guard.get("attempts", 1) > 1:
        marks.append(f"attempt {guard.get('kept', 0) + 1} of {guard['attempts']} kept")
    return f"\n({'; '.join(marks)})" if marks else ""


def run_text(
    run: Run, messages: Sequence[Message], *, thoughts: bool = False, turns: int | None = None
) -> str:
    """A stored run as plain text; ``turns``: the run's persona turns when ``messages`` is a part."""
    header = (
        f"Run {run.id} · {run.scenario_name} · {run.status}"
        + (f" ({run.stop_reason})" if run.stop_reason else "")
        + f" · {run.model} via {run.backend} · "
        + turns_phrase(turns_of(messages) if turns is None else turns, run.turns)
    )
    given = given_line(run)
    blocks = [header + (f"\n{given}" if given else "")]
    for m in messages:
        phase = f" ({m.phase})" if m.phase else ""
        block = f"[{m.turn}] {m.persona}{phase}:"
        if thoughts and m.thinking:
            block += "\n  (thinking) " + m.thinking.replace("\n", "\n  ")
        block += "\n" + (m.content or "(empty reply)") + marks(m)
        blocks.append(block)
    if run.error:
        blocks.append(f"error: {run.error}")
    return "\n\n".join(blocks)


def replay_text(report: Any, *, verbose: bool = False) -> str:
    """What ``personae replay`` prints: a verdict, then the first difference with a short diff."""
    calls = Counter(a.purpose for a in report.answered)
    kinds = ", ".join(
        f"{count(n, 'call')} for {plural(purpose) if n > 1 else 'a ' + purpose}"
        for purpose, n in sorted(calls.items())
    )
    lines = [
        f"Replayed run {report.run_id} ({report.status}, {count(report.recorded_turns, 'message')}) "
        f"from its recorded replies, without a model: {count(report.turns, 'message')}, "
        f"{count(len(report.answered), 'model call')}" + (f" ({kinds})" if kinds else "") + "."
    ]
    if verbose:
        for a in report.answered:
            mark = "identical" if a.matched else "DIFFERS"
            who = a.persona or "-"
            lines.append(f"  turn {a.turn if a.turn is not None else '-':>4} · {who} · {a.purpose} · {a.prompt_hash[:12]} · {mark}")
    if report.identical:
        lines.append(
            "Every prompt hashes exactly as recorded, and every reply parses to the same message."
        )
        return "\n".join(lines)
    first = report.first_difference
    if first is not None:
        lines.append(f"First difference at turn {first}.")
    for d in report.divergences[:1]:
        text = d.describe()
        lines.append(f"{text[:1].upper()}{text[1:]}:")
        lines += ["    " + line for line in d.diff()]
    if len(report.divergences) > 1:
        turns = sorted({d.turn for d in report.divergences if d.turn is not None})
        lines.append(f"Prompts differ at turns {', '.join(map(str, turns))}.")
    for c in report.content_changes[:3]:
        lines.append(
            f"Turn {c.turn} ({c.persona}) parses differently: recorded {_clip(c.recorded)!r}, "
            f"now {_clip(c.replayed)!r}."
        )
    if report.problem:
        lines.append(f"The run as a whole differs: {report.problem}.")
    return "\n".join(lines)


REPLAY_COLUMNS = ("call_id", "turn", "purpose", "persona", "prompt_hash", "identical")


def replay_rows(report: Any) -> list[dict[str, Any]]:
    """One row per replayed model call, for ``replay --format csv|tsv``."""
    return [
        {"call_id": a.call_id, "turn": a.turn, "purpose": a.purpose, "persona": a.persona,
         "prompt_hash": a.prompt_hash, "identical": a.matched}
        for a in report.answered
    ]


def replay_json(report: Any) -> str:
    payload = {
        "run_id": report.run_id,
        "status": report.status,
        "identical": report.identical,
        "first_difference": report.first_difference,
        "turns": report.turns,
        "calls": [
            {"id": a.call_id, "turn": a.turn, "purpose": a.purpose, "persona": a.persona,
             "prompt_hash": a.prompt_hash, "identical": a.matched}
            for a in report.answered
        ],
        "differences": [
            {"turn": d.turn, "purpose": d.purpose, "persona": d.persona,
             "recorded_hash": d.expected_hash, "replayed_hash": d.actual_hash,
             "options_changed": list(d.options_changed), "diff": d.diff()}
            for d in report.divergences
        ],
        "content_changes": [
            {"turn": c.turn, "persona": c.persona, "recorded": c.recorded, "replayed": c.replayed}
            for c in report.content_changes
        ],
        "problem": report.problem,
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
