"""A run's memory as of a turn, read from the database alone.

Nothing about collapse lives only in the process: how far the transcript has been collapsed, which
summaries are still on top, which facts hold at a given turn — all of it is derived here from
``memory_nodes`` and ``memory_edges``, which is what lets ``resume`` pick up a run mid-deliberation
and rebuild exactly the prompt the dead process would have built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from personae.store.models import MemoryEdge, MemoryNode
from personae.store.repo import Store

ITEM_NODE_KINDS = ("fact", "decision", "question")
MEMORY_KINDS = ("summary", *ITEM_NODE_KINDS, "chunk")
REVISION_EDGES = ("supersedes", "contradicts")
VIEW_EDGES = ("summarizes", *REVISION_EDGES)


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
    summarized: dict[int, int]  # summary node id -> the turn a summary took it up
    revised: dict[int, list[tuple[str, int]]]  # node id -> [(supersedes|contradicts, by node)]
    last_edge: int = 0  # the highest edge id read: where ``refreshed`` goes on from
    _marks: list[CollapseMark] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, store: Store, run_id: int) -> MemoryView:
        """The view from the database. Edges onto message nodes are not read: nothing here looks
        at them, and they grow with the transcript (a long run's collapses would slow down)."""
        nodes = store.memory_nodes(run_id, MEMORY_KINDS)
        edges = store.memory_edges(run_id, VIEW_EDGES, to_kinds=MEMORY_KINDS)
        return cls.from_rows(nodes, edges)

    @classmethod
    def from_rows(cls, nodes: Sequence[MemoryNode], edges: Sequence[MemoryEdge]) -> MemoryView:
        view = cls({n.id: n for n in nodes}, {}, {})
        view._add_edges(edges)
        return view

    def refreshed(self, store: Store, run_id: int, changed: Iterable[int] = ()) -> MemoryView:
        """This view brought up to date with what was written since it was read: nodes and
        edges are only ever added, except a node's ``valid_to`` that a collapse closes —
        ``changed`` names those nodes, read again. The result equals a fresh ``load`` (same rows,
        same order), at the cost of what is new rather than of the whole graph, so a long run's
        collapses do not slow down as its memory grows."""
        newest = max(self.nodes, default=0)
        nodes = dict(self.nodes)
        again = sorted(set(changed) & set(nodes))
        for node in store.memory_nodes(run_id, MEMORY_KINDS, after_id=newest, ids=again):
            nodes[node.id] = node
        view = MemoryView(
            nodes, dict(self.summarized), {k: list(v) for k, v in self.revised.items()},
            self.last_edge,
        )
        view._add_edges(store.memory_edges(
            run_id, VIEW_EDGES, to_kinds=MEMORY_KINDS, after_id=self.last_edge
        ))
        return view

    def _add_edges(self, edges: Sequence[MemoryEdge]) -> None:
        for edge in edges:
            self.last_edge = max(self.last_edge, edge.id)
            if edge.kind == "summarizes" and edge.src in self.nodes:
                self.summarized[edge.dst] = self.nodes[edge.src].turn or 0
            elif edge.kind in REVISION_EDGES:
                self.revised.setdefault(edge.dst, []).append((edge.kind, edge.src))

    # -- collapse bookkeeping -----------------------------------------------------------------
    def collapses(self) -> list[CollapseMark]:
        """Every collapse, in order. A view does not change once loaded, so this is computed
        once: ``covered`` asks for it per message of a span."""
        if self._marks is None:
            self._marks = self._collapses()
        return list(self._marks)

    def _collapses(self) -> list[CollapseMark]:
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
