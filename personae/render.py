"""Turning stored runs into text, Markdown and JSON. Plain functions; the CLI prints their output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from personae.store.models import Message, Run

RUN_FIELDS = (
    "id", "scenario_name", "status", "stop_reason", "error", "backend", "model", "layout",
    "num_ctx", "max_turns", "seed", "turns", "prompt_tokens", "evaluated_tokens",
    "completion_tokens", "started_at", "finished_at", "scenario_path",
)
MESSAGE_FIELDS = ("id", "turn", "persona", "phase", "content", "thinking", "cut", "structured", "created_at")


def _plain(value: Any) -> Any:
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


def run_dict(run: Run) -> dict[str, Any]:
    return {name: _plain(getattr(run, name)) for name in RUN_FIELDS}


def message_dict(message: Message) -> dict[str, Any]:
    return {name: _plain(getattr(message, name)) for name in MESSAGE_FIELDS}


def run_json(run: Run, messages: Sequence[Message]) -> str:
    payload = {"run": run_dict(run), "messages": [message_dict(m) for m in messages]}
    return json.dumps(payload, ensure_ascii=False, indent=2)


def run_markdown(run: Run, messages: Sequence[Message], *, thoughts: bool = False) -> str:
    lines = [
        f"# Run {run.id}: {run.scenario_name}",
        "",
        f"- status: {run.status}" + (f" ({run.stop_reason})" if run.stop_reason else ""),
        f"- model: {run.model} ({run.backend}), layout {run.layout}, window {run.num_ctx}",
        f"- tokens: {run.prompt_tokens} prompt, {run.evaluated_tokens} evaluated, "
        f"{run.completion_tokens} completion",
        "",
    ]
    for m in messages:
        phase = f" · {m.phase}" if m.phase else ""
        lines += [f"## {m.turn}. {m.persona}{phase}", ""]
        if thoughts and m.thinking:
            lines += ["> " + line for line in m.thinking.splitlines()] + [""]
        lines += [m.content or "_(empty reply)_", ""]
    return "\n".join(lines)


def run_text(run: Run, messages: Sequence[Message], *, thoughts: bool = False) -> str:
    header = (
        f"Run {run.id} · {run.scenario_name} · {run.status}"
        + (f" ({run.stop_reason})" if run.stop_reason else "")
        + f" · {run.model} via {run.backend} · {run.turns} turns"
    )
    blocks = [header]
    for m in messages:
        phase = f" ({m.phase})" if m.phase else ""
        block = f"[{m.turn}] {m.persona}{phase}:"
        if thoughts and m.thinking:
            block += "\n  (thinking) " + m.thinking.replace("\n", "\n  ")
        block += "\n" + (m.content or "(empty reply)")
        blocks.append(block)
    if run.error:
        blocks.append(f"error: {run.error}")
    return "\n\n".join(blocks)
