"""A model call as the turn page shows it, and what changed since the previous turn's prompt.

The manifest (``llm_calls.manifest``) says what went into a prompt section by section — header,
memory parts with their node ids, the transcript with its turns, the persona's cue — with token
counts. Comparing two manifests answers "why did the Critic see node 42?": which sections grew or
shrank, which turns and memory nodes came in or left. A line diff of the prompt text shows the
same in words.
"""

from __future__ import annotations

import difflib
from typing import Any

from personae.store.models import LLMCall

DIFF_LINES = 400  # a longer line diff is cut: the section table still says what changed
NS_PER_MS = 1_000_000


def prompt_text(call: LLMCall) -> str:
    return "\n".join(f"[{m.get('role', '')}]\n{m.get('content', '')}" for m in call.prompt or [])


def call_view(call: LLMCall, *, kept: bool) -> dict[str, Any]:
    """One call: its sections, the messages sent, options, reply, tokens and timings."""
    return {
        "id": call.id, "purpose": call.purpose, "persona": call.persona, "kept": kept,
        "model": call.model, "backend": call.backend,
        "sections": [dict(entry) for entry in call.manifest or []],
        "messages": [{"role": m.get("role", ""), "content": m.get("content", "")} for m in call.prompt or []],
        "options": call.options or {}, "schema": call.schema,
        "response": call.response, "done_reason": call.done_reason, "error": call.error,
        "prompt_tokens": call.prompt_tokens, "evaluated_tokens": call.evaluated_tokens,
        "cached_tokens": max(call.prompt_tokens - call.evaluated_tokens, 0),
        "completion_tokens": call.completion_tokens,
        "timings_ms": {
            name: round(getattr(call, f"{name}_ns") / NS_PER_MS, 1)
            for name in ("total", "load", "prompt_eval", "eval", "wall")
        },
    }


def _ids(entry: dict[str, Any] | None, key: str) -> list[Any]:
    return list((entry or {}).get(key) or [])


def section_diff(before: LLMCall | None, after: LLMCall) -> dict[str, Any]:
    """Each section of ``after`` against the same section of ``before`` (the previous persona
    turn's kept call): tokens then and now, turns and memory nodes added and removed; and a line
    diff of the two prompts."""
    old = {e.get("section"): e for e in (before.manifest if before is not None else []) or []}
    new = {e.get("section"): e for e in after.manifest or []}
    names = list(new) + [name for name in old if name not in new]
    sections = []
    for name in names:
        a, b = old.get(name), new.get(name)
        row: dict[str, Any] = {
            "section": name,
            "tokens_before": (a or {}).get("tokens"), "tokens_after": (b or {}).get("tokens"),
            "status": "added" if a is None else "removed" if b is None else "same",
        }
        for key in ("turns", "node_ids"):
            was, now = _ids(a, key), _ids(b, key)
            row[f"{key}_added"] = [x for x in now if x not in was]
            row[f"{key}_removed"] = [x for x in was if x not in now]
        if row["status"] == "same" and (
            row["tokens_before"] != row["tokens_after"] or any(row[k] for k in row if k.endswith(("_added", "_removed")))
        ):
            row["status"] = "changed"
        sections.append(row)
    lines = list(difflib.unified_diff(
        prompt_text(before).splitlines() if before is not None else [],
        prompt_text(after).splitlines(),
        fromfile=f"turn {before.turn}" if before is not None else "nothing",
        tofile=f"turn {after.turn}", lineterm="", n=1,
    ))
    return {
        "against_turn": before.turn if before is not None else None,
        "sections": sections,
        "lines": [{"text": line, "kind": _line_kind(line)} for line in lines[:DIFF_LINES]],
        "lines_cut": max(len(lines) - DIFF_LINES, 0),
    }


def _line_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "add", "-": "del"}.get(line[:1], "ctx")
