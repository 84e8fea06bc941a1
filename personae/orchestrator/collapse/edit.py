"""What one collapse adds to the memory graph, assembled before the one transaction commits it.

Nothing established is dropped: items stay valid until a later answer supersedes or contradicts
them, which closes them with an edge saying so; restated items get ``supports`` edges instead of
duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from personae.memory import items as schema
from personae.memory.view import MemoryView
from personae.orchestrator.collapse.summarizer import Answer
from personae.store.graph_rows import EdgeSpec, GraphEdit, NodeSpec
from personae.store.models import MemoryNode
from personae.store.repo import CallRecord

T = TypeVar("T")
SummaryRef = tuple[str | int, int, int, str]  # (node id or key, first turn, last turn, text)


@dataclass
class CollapsePlan:
    """A collapse being assembled: graph additions and the calls that produced them."""

    nodes: list[NodeSpec] = field(default_factory=list)
    edges: list[EdgeSpec] = field(default_factory=list)
    close: list[tuple[int, int]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=dict)

    def record(self, answer: Answer) -> schema.CollapseOutput:
        """Keep an answer's calls and mode; its output is what the caller builds nodes from."""
        self.calls += answer.calls
        self.modes.append(answer.mode)
        return answer.output

    def edit(self) -> GraphEdit:
        return GraphEdit(tuple(self.nodes), tuple(self.edges), tuple(self.close))

    def count(self, what: str) -> None:
        self.added[what] = self.added.get(what, 0) + 1


def add_items(
    plan: CollapsePlan,
    output: schema.CollapseOutput,
    view: MemoryView,
    known: Sequence[MemoryNode],
    nodes: dict[int, int],
    *,
    at: int,
    key: str,
) -> None:
    """Facts, decisions and questions of one answer: new nodes, or ``supports`` edges to the
    same item already in memory; superseded or contradicted items are closed with an edge."""
    existing: dict[tuple[str, str], str | int] = {
        (n.kind, norm(n.text)): n.id for n in view.items(at)
    }
    existing |= {(n.kind, norm(n.text)): n.key for n in plan.nodes if n.kind != "summary"}
    labelled = {i: n.id for i, n in enumerate(known, start=1)}  # prompt label -> node id
    closed = {node_id for node_id, _ in plan.close}
    for name, kind in schema.ITEM_KINDS.items():
        for i, item in enumerate(getattr(output, name)):
            cited = [nodes[t] for t in item.turns if t in nodes]
            same = existing.get((kind, norm(item.text)))
            if same is not None and not (item.supersedes or item.contradicts):
                plan.edges += [EdgeSpec(m, same, "supports", at) for m in cited]
                continue
            item_key = f"{key}.{name}{i}"
            existing[(kind, norm(item.text))] = item_key
            plan.nodes.append(NodeSpec(
                item_key, kind, item.text, turn=at, valid_from=min(item.turns),
                data={"turns": sorted(item.turns), "source": plan.modes[-1]},
            ))
            plan.edges += [EdgeSpec(item_key, m, "derived_from", at) for m in cited]
            plan.count(f"{kind}s")
            for relation, targets in (("supersedes", item.supersedes),
                                      ("contradicts", item.contradicts)):
                for label in targets:
                    old = labelled.get(label)
                    if old is not None and old not in closed:
                        plan.edges.append(EdgeSpec(item_key, old, relation, at))
                        plan.close.append((old, at))
                        closed.add(old)


def pack(sized: Sequence[tuple[T, int]], room: int) -> list[list[T]]:
    """Consecutive items, in order, into as few groups of at most ``room`` tokens as a greedy
    pass makes (an item larger than ``room`` gets a group of its own)."""
    groups: list[list[T]] = [[]]
    used = 0
    for item, tokens in sized:
        if groups[-1] and used + tokens > room:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += tokens
    return groups


def norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def summary_ref(node: MemoryNode) -> SummaryRef:
    first, last = (node.data or {}).get("span", [node.turn or 0, node.turn or 0])
    return (node.id, first, last, node.text)
