"""The memory block of a rebuilt prompt: what the personas are told about the turns they no longer
see verbatim.

In order: the user's pinned facts (always), the summaries at the top of the tree (highest level
first when the budget is short), then facts, decisions, open questions and document passages ranked
by relevance to the current phase and the last messages (``retrieval.rank``), until the block's
token budget is used. The block is a pure function of the memory as of the last collapse, so it
changes only at a collapse — consecutive prompts keep sharing their prefix with the server's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from personae.memory.documents import chunk_location
from personae.memory.ranking import Weights, generative_rank
from personae.memory.retrieval import rank
from personae.memory.view import MemoryView
from personae.store.models import MemoryNode

CHUNK_PREVIEW = 480  # characters of a document passage shown in the block
CHUNK_SHARE = 0.35  # at most this share of the block goes to document passages
SUMMARY_SHARE = 0.5  # and at most this share to summaries (pinned facts come before both)

PARTS = (
    ("pinned", "Pinned by the user:"),
    ("summaries", "Summaries of earlier turns:"),
    ("facts", "Facts:"),
    ("decisions", "Decisions:"),
    ("questions", "Open questions:"),
    ("documents", "From the documents:"),
)
_PART_OF_KIND = {"fact": "facts", "decision": "decisions", "question": "questions", "chunk": "documents"}


@dataclass(frozen=True)
class MemoryBlock:
    text: str
    tokens: int
    as_of: int  # the collapse (turn) it reflects; 0 before the first collapse
    after_turn: int  # the transcript shown verbatim starts after this turn
    parts: dict[str, list[int]] = field(default_factory=dict)  # part -> node ids, in block order
    part_tokens: dict[str, int] = field(default_factory=dict)

    @property
    def node_ids(self) -> list[int]:
        return [i for ids in self.parts.values() for i in ids]

    def manifest(self) -> list[dict[str, Any]]:
        """One manifest entry per part, so "why did the Critic see node 42" is one query."""
        return [
            {
                "section": f"memory/{part}",
                "node_ids": ids,
                "tokens": self.part_tokens.get(part, 0),
                "as_of_turn": self.as_of,
            }
            for part, ids in self.parts.items()
            if ids
        ]


def item_line(node: MemoryNode) -> str:
    data = node.data or {}
    if node.kind == "summary":
        first, last = data.get("span", [node.turn, node.turn])
        return f"- Turns {first}-{last}: {node.text}"
    if node.kind == "chunk":
        where = chunk_location(data)
        text = " ".join(node.text.split())
        if len(text) > CHUNK_PREVIEW:
            text = text[: CHUNK_PREVIEW - 1].rstrip() + "…"
        return f"- {where}: {text}"
    turns = data.get("turns") or ([node.valid_from] if node.valid_from else [])
    cite = f" (turn{'s' if len(turns) > 1 else ''} {', '.join(map(str, turns))})" if turns else ""
    return f"- {node.text}{cite}"


def build_block(
    view: MemoryView,
    *,
    as_of: int,
    query: str,
    budget: int,
    count: Callable[[str], int],
    generative: Weights | None = None,
) -> MemoryBlock:
    """The block for prompts after the collapse at ``as_of``, within ``budget`` tokens (pinned
    facts are never left out, whatever the budget). Items and passages are ranked by BM25, or,
    given ``generative`` weights, by recency, importance and relevance (``ranking.py``)."""
    chosen: dict[str, list[MemoryNode]] = {part: [] for part, _ in PARTS}
    used = {"all": 0, "summaries": 0, "documents": 0}
    cost: dict[int, int] = {}

    def take(part: str, node: MemoryNode, *, cap: float | None = None, force: bool = False) -> bool:
        tokens = count(item_line(node)) + 1
        limited = used.get(part, 0) + tokens > cap if cap is not None else False
        if not force and (used["all"] + tokens > budget or limited):
            return False
        chosen[part].append(node)
        cost[node.id] = tokens
        used["all"] += tokens
        if part in used:
            used[part] += tokens
        return True

    pinned = view.pinned(as_of)
    for node in pinned:
        take("pinned", node, force=True)
    # Summaries: the highest levels first, newest first within a level; shown oldest first.
    summaries = sorted(view.frontier(as_of), key=lambda n: (-(n.level or 0), -n.id))
    for node in summaries:
        take("summaries", node, cap=budget * SUMMARY_SHARE)
    chosen["summaries"].sort(key=lambda n: (n.data or {}).get("span", [0])[0])
    # Items and passages compete on relevance; newest first breaks ties.
    pinned_ids = {n.id for n in pinned}
    candidates = [n for n in view.items(as_of) if n.id not in pinned_ids]
    candidates += view.chunks()
    by_id = {n.id: n for n in candidates}
    ordered = sorted(candidates, key=lambda n: -n.id)
    ranked = (
        generative_rank(query, ordered, as_of, generative, _search_text) if generative
        else rank(query, [(n.id, _search_text(n)) for n in ordered])
    )
    for node_id in ranked:
        node = by_id[node_id]
        part = _PART_OF_KIND[node.kind]
        take(part, node, cap=budget * CHUNK_SHARE if part == "documents" else None)

    lines: list[str] = []
    parts: dict[str, list[int]] = {}
    part_tokens: dict[str, int] = {}
    for part, title in PARTS:
        if chosen[part]:
            lines.append(title)
            lines += [item_line(n) for n in chosen[part]]
            parts[part] = [n.id for n in chosen[part]]
            part_tokens[part] = sum(cost[n.id] for n in chosen[part])
    covered = view.covered(as_of)
    if not lines:
        return MemoryBlock("", 0, as_of, covered)
    intro = (
        f"Memory of the deliberation (turns 1-{covered} are condensed here):"
        if covered
        else "Memory (the user's pinned facts and passages from the documents):"
    )
    text = "\n".join([intro, *lines])
    return MemoryBlock(text, count(text), as_of, covered, parts, part_tokens)


def _search_text(node: MemoryNode) -> str:
    if node.kind == "chunk":
        return f"{(node.data or {}).get('path', '')} {node.text}"
    return node.text


def block_query(goal: str, phase: str | None, recent: Sequence[str]) -> str:
    """What relevance is measured against: the goal, the phase, and the last messages (last, so
    their words count most)."""
    return "\n".join([goal, phase or "", *recent])
