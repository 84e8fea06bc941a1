"""A run's memory as of a turn, read from the database alone.

Nothing about collapse lives only in the process: how far the transcript has been collapsed, which
summaries are still on top, which facts hold at a given turn — all of it is derived here from
``memory_nodes`` and ``memory_edges``, which is what lets ``resume`` pick up a run mid-deliberation
and rebuild exactly the prompt the dead process would have built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from personae.store.models import MemoryEdge, MemoryNode
from personae.store.repo import Store

ITEM_NODE_KINDS = ("fact", "decision", "question")
MEMORY_KINDS = ("summary", *ITEM_NODE_KINDS, "chunk")
REVISION_EDGES = ("supersedes", "contradicts")


@dataclass(frozen=True)
class CollapseMark:
    """One collapse, as recorded on its level-1 summaries."""

    index: int
    turn: int  # the collapse ran after this turn
    first: int  # the turns it collapsed
    last: int


@dataclass
class MemoryView:
    nodes: dict[int, MemoryNode]
    summarized: dict[int, int]  # summary or message node id -> the turn a summary took it up
    revised: dict[int, list[tuple[str, int]]]  # node id -> [(supersedes|contradicts, by node)]

    @classmethod
    def load(cls, store: Store, run_id: int) -> MemoryView:
        nodes = {n.id: n for n in store.memory_nodes(run_id, MEMORY_KINDS)}
        edges = store.memory_edges(run_id, ("summarizes", *REVISION_EDGES))
        return cls.from_rows(list(nodes.values()), edges)

    @classmethod
    def from_rows(cls, nodes: Sequence[MemoryNode], edges: Sequence[MemoryEdge]) -> MemoryView:
        by_id = {n.id: n for n in nodes}
        summarized: dict[int, int] = {}
        revised: dict[int, list[tuple[str, int]]] = {}
        for edge in edges:
            if edge.kind == "summarizes" and edge.src in by_id:
                summarized[edge.dst] = by_id[edge.src].turn or 0
            elif edge.kind in REVISION_EDGES:
                revised.setdefault(edge.dst, []).append((edge.kind, edge.src))
        return cls(by_id, summarized, revised)

    # -- collapse bookkeeping -----------------------------------------------------------------
    def collapses(self) -> list[CollapseMark]:
        marks: dict[int, CollapseMark] = {}
        for node in self.nodes.values():
            data = node.data or {}
            if node.kind != "summary" or node.level != 1 or "collapse" not in data:
                continue
            index = int(data["collapse"])
            first, last = data["span"]
            seen = marks.get(index)
            if seen is not None:
                first, last = min(first, seen.first), max(last, seen.last)
            marks[index] = CollapseMark(index, node.turn or 0, first, last)
        return [marks[i] for i in sorted(marks)]

    def covered(self, as_of: int | None = None) -> int:
        """The last turn taken up by a collapse made by ``as_of`` (0: none); later turns stay
        verbatim in the prompt."""
        return max(
            (m.last for m in self.collapses() if as_of is None or m.turn <= as_of), default=0
        )

    @property
    def last_collapse_turn(self) -> int:
        return max((m.turn for m in self.collapses()), default=0)

    # -- what holds at a turn -----------------------------------------------------------------
    def frontier(self, as_of: int, level: int | None = None) -> list[MemoryNode]:
        """Summaries made by ``as_of`` that no summary made by then has taken up: the top of the
        tree. Oldest first."""
        return [
            n for n in self._made_by("summary", as_of)
            if (level is None or n.level == level)
            and not (n.id in self.summarized and self.summarized[n.id] <= as_of)
        ]

    def items(self, as_of: int, kinds: Sequence[str] = ITEM_NODE_KINDS) -> list[MemoryNode]:
        """Facts, decisions and questions valid at ``as_of``, oldest first."""
        out = []
        for kind in kinds:
            out += [
                n for n in self._made_by(kind, as_of)
                if (n.valid_from or 0) <= as_of and (n.valid_to is None or n.valid_to > as_of)
            ]
        return sorted(out, key=lambda n: n.id)

    def pinned(self, as_of: int) -> list[MemoryNode]:
        return [n for n in self.items(as_of, ("fact",)) if (n.data or {}).get("pinned")]

    def chunks(self) -> list[MemoryNode]:
        return [n for n in self.nodes.values() if n.kind == "chunk"]

    def _made_by(self, kind: str, as_of: int) -> list[MemoryNode]:
        return [
            n for n in self.nodes.values() if n.kind == kind and (n.turn or 0) <= as_of
        ]
