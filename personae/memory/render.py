"""``personae show RUN --memory``: a run's memory as text or JSON. Plain functions over rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from personae.store.models import MemoryEdge, MemoryNode, Run

ITEM_TITLES = (("fact", "Facts"), ("decision", "Decisions"), ("question", "Open questions"))


def memory_dict(nodes: Sequence[MemoryNode], edges: Sequence[MemoryEdge]) -> dict[str, Any]:
    closed_by = {e.dst: (e.kind, e.src) for e in edges if e.kind in ("supersedes", "contradicts")}
    taken_up = {e.dst: e.src for e in edges if e.kind == "summarizes"}

    def item(node: MemoryNode) -> dict[str, Any]:
        data = node.data or {}
        entry: dict[str, Any] = {
            "id": node.id, "text": node.text, "turns": data.get("turns", []),
            "made_at_turn": node.turn, "valid_from": node.valid_from, "valid_to": node.valid_to,
        }
        if data.get("pinned"):
            entry["pinned"] = True
        if node.id in closed_by:
            entry["closed_by"] = {"edge": closed_by[node.id][0], "node": closed_by[node.id][1]}
        return entry

    summaries: list[dict[str, Any]] = [
        {
            "id": n.id, "level": n.level, "span": (n.data or {}).get("span"), "text": n.text,
            "made_at_turn": n.turn, "mode": (n.data or {}).get("mode"),
            "merged_into": taken_up.get(n.id),
        }
        for n in nodes if n.kind == "summary"
    ]
    summaries.sort(key=lambda s: (-(s["level"] or 0), (s["span"] or [0])[0]))
    result: dict[str, Any] = {"summaries": summaries}
    for kind, _ in ITEM_TITLES:
        result[f"{kind}s"] = [item(n) for n in nodes if n.kind == kind]
    documents = [n for n in nodes if n.kind == "document"]
    result["documents"] = [
        {"id": d.id, "name": d.text, "chunks": sum(
            1 for n in nodes if n.kind == "chunk" and (n.data or {}).get("document") == d.text
        )}
        for d in documents
    ]
    return result


def memory_json(run: Run, nodes: Sequence[MemoryNode], edges: Sequence[MemoryEdge]) -> str:
    payload = {"run": run.id, **memory_dict(nodes, edges)}
    return json.dumps(payload, ensure_ascii=False, indent=2)


def memory_text(run: Run, nodes: Sequence[MemoryNode], edges: Sequence[MemoryEdge]) -> str:
    memory = memory_dict(nodes, edges)
    collapses = {(n.data or {}).get("collapse") for n in nodes
                 if n.kind == "summary" and n.level == 1} - {None}
    levels = max((s["level"] or 0 for s in memory["summaries"]), default=0)
    blocks = [
        f"Run {run.id} · {run.scenario_name} · memory after {run.turns} turns · "
        f"{len(collapses)} collapses · {levels} summary level{'s' if levels != 1 else ''}"
    ]
    if memory["summaries"]:
        lines = ["Summaries (highest level first):"]
        for s in memory["summaries"]:
            first, last = s["span"] or ["?", "?"]
            into = f" (merged into {s['merged_into']})" if s["merged_into"] else ""
            lines.append(f"  [{s['id']}] level {s['level']} · turns {first}-{last}{into}: {s['text']}")
        blocks.append("\n".join(lines))
    for kind, title in ITEM_TITLES:
        entries = memory[f"{kind}s"]
        if not entries:
            continue
        holding = sum(1 for e in entries if e["valid_to"] is None)
        lines = [f"{title} ({holding} holding, {len(entries) - holding} closed):"]
        for e in entries:
            notes = ["pinned"] if e.get("pinned") else []
            if e["turns"]:
                notes.append(_cited_from(e))
            if e.get("closed_by"):
                closed = e["closed_by"]
                notes.append(f"{closed['edge']} by [{closed['node']}] at turn {e['valid_to']}")
            mark = "  " if e["valid_to"] is None else "  ✗ "
            lines.append(f"{mark}[{e['id']}] {e['text']}" + (f" ({'; '.join(notes)})" if notes else ""))
        blocks.append("\n".join(lines))
    if memory["documents"]:
        blocks.append("Documents:\n" + "\n".join(
            f"  [{d['id']}] {d['name']}: {d['chunks']} chunks" for d in memory["documents"]
        ))
    if len(blocks) == 1:
        blocks.append("Memory is empty: no collapse has run, and no input was pinned.")
    return "\n\n".join(blocks)


def _cited_from(entry: dict[str, Any]) -> str:
    turns = entry["turns"]
    return f"turn{'s' if len(turns) > 1 else ''} {', '.join(map(str, turns))}"
