"""What each page shows, as plain JSON-ready dicts built from the store.

The HTML templates and ``?format=json`` render the same dict, so a page and its JSON never
disagree, and the one-file export (``export.py``) freezes the same run page. Functions here only
read: they take a ``Store`` opened read-only and never write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personae.hits import group_hits
from personae.liveness import process_alive
from personae.memory.graph import load_graph
from personae.memory.render import memory_dict
from personae.store.models import LLMCall, Message, Run
from personae.store.repo import Store
from personae.web.prompt_diff import call_view, section_diff

USER = "User"
PALETTE = 8  # persona colour classes pc0 … pc7 in app.css
SEARCH_LIMIT = 50
ATTEMPTS = ("turn", "retry")  # a persona turn's calls: the first attempt and the guard's retries


def plain(value: Any) -> Any:
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


@dataclass(frozen=True)
class RunFilters:
    """The runs page's filters, from its query string; empty means any."""

    scenario: str = ""
    status: str = ""
    model: str = ""

    def keep(self, row: dict[str, Any]) -> bool:
        return (
            (not self.scenario or self.scenario.lower() in row["scenario"].lower())
            and (not self.status or row["status"] == self.status)
            and (not self.model or self.model.lower() in row["model"].lower())
        )


def run_status(run: Run) -> str:
    """The stored status, or ``stale`` for a run whose process died without a word."""
    if run.status == "running" and not process_alive(run.pid, run.heartbeat_at or run.started_at):
        return "stale"
    return run.status


def run_row(run: Run, quality: float | None) -> dict[str, Any]:
    return {
        "id": run.id, "scenario": run.scenario_name, "model": run.model, "backend": run.backend,
        "layout": run.layout, "status": run_status(run), "stop_reason": run.stop_reason,
        "turns": run.turns, "prompt_tokens": run.prompt_tokens,
        "evaluated_tokens": run.evaluated_tokens, "completion_tokens": run.completion_tokens,
        "quality": quality, "parent_run_id": run.parent_run_id, "fork_turn": run.fork_turn,
        "started_at": plain(run.started_at), "finished_at": plain(run.finished_at),
        "error": run.error,
    }


def runs_page(store: Store, filters: RunFilters, quality: dict[int, float | None]) -> dict[str, Any]:
    """``/``: every run, newest first, with the filters applied. ``quality`` maps run ids to
    their share of good replies (the scorer's), for the runs it knows."""
    rows = [run_row(r, quality.get(r.id)) for r in store.runs()]
    shown = [r for r in rows if filters.keep(r)]
    children: dict[int, list[int]] = {}
    for r in rows:
        if r["parent_run_id"] is not None:
            children.setdefault(r["parent_run_id"], []).append(r["id"])
    for r in shown:
        r["forks"] = sorted(children.get(r["id"], []))
    return {
        "runs": shown,
        "total": len(rows),
        "filters": {"scenario": filters.scenario, "status": filters.status, "model": filters.model},
        "statuses": sorted({r["status"] for r in rows}),
    }


def persona_classes(store: Store, run_id: int, messages: Sequence[Message]) -> dict[str, str]:
    """A colour class for each speaker: roster order first, then anyone else; User stands apart."""
    names = [p.name for p in sorted(store.run_personas(run_id), key=lambda p: (p.position is None, p.position or 0, p.id))]
    for m in messages:
        if m.persona not in names:
            names.append(m.persona)
    classes: dict[str, str] = {}
    for name in names:
        classes[name] = "user" if name == USER else f"pc{len([c for c in classes.values() if c != 'user']) % PALETTE}"
    return classes


def message_row(m: Message, colour: str) -> dict[str, Any]:
    meta = m.meta or {}
    guard = meta.get("guard") or {}
    attempts = int(guard.get("attempts", 1) or 1)
    return {
        "turn": m.turn, "persona": m.persona, "phase": m.phase, "content": m.content,
        "thinking": m.thinking, "cut": m.cut, "truncated": bool(meta.get("truncated")),
        "attempts": attempts, "kept_attempt": int(guard.get("kept", attempts - 1) or 0) + 1,
        "retry_reasons": [", ".join(c.get("problems") or []) for c in guard.get("checks", [])
                          if c.get("problems")],
        "user": m.persona == USER, "colour": colour, "created_at": plain(m.created_at),
    }


def run_page(store: Store, run_id: int, after: int = 0) -> dict[str, Any]:
    """``/runs/{id}``: the run and its transcript (turns after ``after`` only, for live polling)."""
    run = store.run(run_id)
    messages = store.messages(run_id)
    colours = persona_classes(store, run_id, messages)
    rows = [message_row(m, colours[m.persona]) for m in messages if m.turn > after]
    status = run_status(run)
    return {
        "run": run_row(run, None),
        "live": status == "running",
        "messages": rows,
        "phases": phase_groups(rows),
        "personas": [{"name": n, "colour": c} for n, c in colours.items()],
    }


def phase_groups(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of one phase, in order: the transcript's sections. A message with
    no phase (User's input) belongs to the section it came in."""
    groups: list[dict[str, Any]] = []
    for row in rows:
        if not groups or (row["phase"] and groups[-1]["phase"] != row["phase"]):
            groups.append({"phase": row["phase"], "turns": []})
        groups[-1]["turns"].append(row["turn"])
    return groups


def turn_calls(calls: Sequence[LLMCall], turn: int) -> list[LLMCall]:
    return [c for c in calls if c.turn == turn]


def turn_page(store: Store, run_id: int, turn: int) -> dict[str, Any] | None:
    """``/runs/{id}/turns/{turn}``: every call made for the turn (selection, attempts, collapse),
    section by section, and what changed since the previous persona turn's prompt. None: no such
    turn."""
    run = store.run(run_id)
    messages = {m.turn: m for m in store.messages(run_id)}
    message = messages.get(turn)
    if message is None:
        return None
    calls = store.calls(run_id)
    mine = turn_calls(calls, turn)
    attempts = [c for c in mine if c.purpose in ATTEMPTS]
    kept_index = int(((message.meta or {}).get("guard") or {}).get("kept", len(attempts) - 1) or 0)
    kept = attempts[min(kept_index, len(attempts) - 1)] if attempts else None
    earlier = [c for c in calls if c.purpose in ATTEMPTS and c.turn is not None and c.turn < turn]
    previous = _kept_of_turn(earlier, messages) if earlier else None
    colours = persona_classes(store, run_id, list(messages.values()))
    return {
        "run": run_row(run, None),
        "message": message_row(message, colours[message.persona]),
        "calls": [call_view(c, kept=c is kept) for c in mine],
        "previous_turn": previous.turn if previous is not None else None,
        "diff": section_diff(previous, kept) if kept is not None else None,
        "turns": sorted(messages),
    }


def _kept_of_turn(earlier: Sequence[LLMCall], messages: dict[int, Message]) -> LLMCall:
    """The kept call of the latest persona turn among ``earlier`` calls."""
    last_turn = max(c.turn for c in earlier if c.turn is not None)
    attempts = [c for c in earlier if c.turn == last_turn]
    meta = messages[last_turn].meta if last_turn in messages else None
    kept = int(((meta or {}).get("guard") or {}).get("kept", len(attempts) - 1) or 0)
    return attempts[min(kept, len(attempts) - 1)]


def graph_elements(store: Store, run_id: int) -> dict[str, Any]:
    """The memory graph as ``personae graph`` loads it, as nodes and edges for the drawing."""
    graph = load_graph(store, run_id)
    nodes = []
    for node, attrs in graph.nodes(data=True):
        data = attrs.get("data") or {}
        turns = data.get("turns") or data.get("span") or ([attrs["turn"]] if attrs.get("kind") == "message" else [])
        nodes.append({
            "id": node, "kind": attrs.get("kind", ""), "level": attrs.get("level"),
            "text": attrs.get("text", ""), "turns": list(turns),
            "closed": attrs.get("valid_to") is not None,
        })
    edges = [
        {"id": key, "source": src, "target": dst, "kind": attrs.get("kind", "")}
        for src, dst, key, attrs in graph.edges(keys=True, data=True)
    ]
    return {"nodes": nodes, "edges": edges}


def memory_page(store: Store, run_id: int) -> dict[str, Any]:
    """``/runs/{id}/memory``: summaries by level, facts, decisions, open questions (with the
    turns they cite and what closed them) and the graph."""
    run = store.run(run_id)
    nodes = store.memory_nodes(run_id)
    edges = store.memory_edges(run_id)
    return {
        "run": run_row(run, None),
        "memory": memory_dict(nodes, edges),
        "graph": graph_elements(store, run_id),
    }


def search_page(store: Store, query: str, run_id: int | None = None) -> dict[str, Any]:
    """``/search?q=``: the hits of ``personae search``, grouped the same way."""
    if not query.strip():
        return {"q": query, "messages": [], "memory": []}
    wide = SEARCH_LIMIT * 20
    hits = group_hits(store.search(query, run_id=run_id, limit=wide), lambda h: (h.persona, h.text), SEARCH_LIMIT)
    found = group_hits(store.search_memory(query, run_id=run_id, limit=wide), lambda h: (h.kind, h.text), SEARCH_LIMIT)
    return {
        "q": query,
        "messages": [
            {"run_id": g.first.run_id, "turn": g.first.turn, "persona": g.first.persona,
             "snippet": g.first.snippet,
             "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
            for g in hits
        ],
        "memory": [
            {"run_id": g.first.run_id, "node_id": g.first.node_id, "kind": g.first.kind,
             "turn": g.first.turn, "snippet": g.first.snippet,
             "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
            for g in found
        ],
    }
