"""The documents as the recipe policies read them: chunks in document order, and retrieval.

A policy is a pure function of the committed transcript; the recipes also read the run's
documents, which ``start_run`` imported into the memory graph before the first turn and which
never change afterwards. So the run loop loads them once from the database (``load_passages``,
never from the working directory: a resumed run reads what it ran with) and hands them to
``make_policy``; the policy stays a pure function of (transcript, documents).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from personae.memory.documents import chunk_location, split_file
from personae.memory.retrieval import rank
from personae.store.reads import Reader


@dataclass(frozen=True)
class Passage:
    node_id: int  # the chunk's memory node: what a turn that read it cites (derived_from)
    where: str  # "document › section › subsection"
    text: str
    # The node the chunk is ``part_of``: its section, or the document for text before the first
    # heading (and for plain text). A chain by sections reads the chunks of one such node a turn.
    section: int | None = None


def load_passages(store: Reader, run_id: int) -> tuple[Passage, ...]:
    """Every chunk of the run's documents, in document order (the order they were imported)."""
    parent = {
        edge.src: edge.dst
        for edge in store.memory_edges(run_id, ["part_of"], to_kinds=["section", "document"])
    }
    return tuple(
        Passage(node.id, chunk_location(node.data), node.text, parent.get(node.id))
        for node in store.memory_nodes(run_id, ["chunk"])
    )


def best_passage(query: str, passages: Sequence[Passage]) -> Passage | None:
    """The passage that answers ``query`` best (BM25 over the run's chunks; ties: the first)."""
    if not passages:
        return None
    ranked = rank(query, [(p.node_id, f"{p.where} {p.text}") for p in passages])
    by_id = {p.node_id: p for p in passages}
    return by_id[ranked[0]]


def preview_passages(texts: Mapping[Path, str]) -> tuple[Passage, ...]:
    """The chunks a run of these documents would import, split the same way but numbered here
    instead of by the database: ``personae validate`` plans a chain's turns before any run exists."""
    passages: list[Passage] = []
    offset = 0
    for path, text in texts.items():
        edit = split_file(path, text)
        ids = {node.key: offset + number for number, node in enumerate(edit.nodes, start=1)}
        parent = {edge.src: edge.dst for edge in edit.edges if edge.kind == "part_of"}
        for node in edit.nodes:
            if node.kind != "chunk":
                continue
            section = parent.get(node.key)
            passages.append(Passage(ids[node.key], chunk_location(node.data), node.text,
                                    ids[section] if isinstance(section, str) else None))
        offset += len(edit.nodes)
    return tuple(passages)
