"""Writing and reading the memory graph's rows (``memory_nodes``, ``memory_edges``).

The orchestrator describes what a turn or a collapse adds to the graph as a plain ``GraphEdit``
(nodes with local keys, edges between keys or existing node ids, facts to close); the store applies
it inside the transaction that commits the turn or the collapse, so the graph never disagrees with
the transcript. Every committed message gets its node here, with ``authored_by`` (to its persona)
and ``replies_to`` (to the message before it), whoever commits it; a message whose meta says
``pin`` (a pinned scenario input) also becomes a fact, ``derived_from`` it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from personae.store.models import MemoryEdge, MemoryNode, Message

MESSAGE_KEY = "message"  # in a turn's edit: the node of the message committed with it
MESSAGE_PREVIEW = 200  # characters of a message kept as its node's text (the rest is in messages)

NodeRef = str | int  # a key of the same edit, or the id of a node already stored


@dataclass(frozen=True)
class NodeSpec:
    key: str
    kind: str
    text: str
    level: int | None = None
    data: dict[str, Any] | None = None
    turn: int | None = None
    valid_from: int | None = None


@dataclass(frozen=True)
class EdgeSpec:
    src: NodeRef
    dst: NodeRef
    kind: str
    turn: int | None = None


@dataclass(frozen=True)
class GraphEdit:
    """What one turn or collapse adds to the graph. ``close`` ends the validity of stored items
    (node id, turn): a fact is never deleted, only closed, with an edge saying why."""

    nodes: tuple[NodeSpec, ...] = ()
    edges: tuple[EdgeSpec, ...] = ()
    close: tuple[tuple[int, int], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __add__(self, other: GraphEdit) -> GraphEdit:
        return GraphEdit(
            self.nodes + other.nodes,
            self.edges + other.edges,
            self.close + other.close,
            {**self.meta, **other.meta},
        )

    def __bool__(self) -> bool:
        return bool(self.nodes or self.edges or self.close)


def apply_edit(
    session: Session, run_id: int, edit: GraphEdit, keys: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Insert the edit's nodes and edges; returns every key with its new node id."""
    ids: dict[str, int] = dict(keys or {})
    rows = []
    for spec in edit.nodes:
        if spec.key in ids:
            raise ValueError(f"node key {spec.key!r} used twice in one graph edit")
        row = MemoryNode(
            run_id=run_id,
            kind=spec.kind,
            level=spec.level,
            text=spec.text,
            data=spec.data,
            turn=spec.turn,
            valid_from=spec.valid_from,
        )
        session.add(row)
        rows.append((spec.key, row))
    session.flush()
    ids.update({key: row.id for key, row in rows})
    for edge in edit.edges:
        session.add(
            MemoryEdge(
                run_id=run_id,
                src=_resolve(edge.src, ids),
                dst=_resolve(edge.dst, ids),
                kind=edge.kind,
                turn=edge.turn,
            )
        )
    for node_id, turn in edit.close:
        session.execute(
            update(MemoryNode)
            .where(MemoryNode.id == node_id, MemoryNode.run_id == run_id)
            .values(valid_to=turn)
        )
    session.flush()
    return ids


def _resolve(ref: NodeRef, ids: Mapping[str, int]) -> int:
    if isinstance(ref, int):
        return ref
    try:
        return ids[ref]
    except KeyError:
        raise ValueError(f"graph edit refers to unknown node key {ref!r}") from None


def persona_node(session: Session, run_id: int, name: str) -> int:
    """The persona's node in this run, made on first use (User and helpers included)."""
    found = session.scalar(
        select(MemoryNode.id).where(
            MemoryNode.run_id == run_id, MemoryNode.kind == "persona", MemoryNode.text == name
        )
    )
    if found is not None:
        return found
    row = MemoryNode(run_id=run_id, kind="persona", text=name, turn=0)
    session.add(row)
    session.flush()
    return row.id


def add_message_node(session: Session, run_id: int, message: Message) -> int:
    """The message's node, ``authored_by`` its persona and ``replies_to`` the turn before it."""
    node = MemoryNode(
        run_id=run_id,
        kind="message",
        text=message.content[:MESSAGE_PREVIEW],
        data={"persona": message.persona, "phase": message.phase} if message.phase else None,
        turn=message.turn,
        message_id=message.id,
    )
    session.add(node)
    session.flush()
    edges = [MemoryEdge(
        run_id=run_id, src=node.id, dst=persona_node(session, run_id, message.persona),
        kind="authored_by", turn=message.turn,
    )]
    previous = session.scalar(
        select(MemoryNode.id).where(
            MemoryNode.run_id == run_id,
            MemoryNode.kind == "message",
            MemoryNode.turn == message.turn - 1,
        )
    )
    if previous is not None:
        edges.append(MemoryEdge(
            run_id=run_id, src=node.id, dst=previous, kind="replies_to", turn=message.turn
        ))
    if (message.meta or {}).get("pin"):
        # A pinned input is a fact at once, whatever a summarizer later makes of it.
        fact = MemoryNode(
            run_id=run_id, kind="fact", text=message.content, turn=message.turn,
            valid_from=message.turn, data={"pinned": True, "turns": [message.turn]},
        )
        session.add(fact)
        session.flush()
        edges.append(MemoryEdge(
            run_id=run_id, src=fact.id, dst=node.id, kind="derived_from", turn=message.turn
        ))
    session.add_all(edges)
    session.flush()
    return node.id


def message_nodes(session: Session, run_id: int, turns: Iterable[int]) -> dict[int, int]:
    """turn -> message node id, for the given turns of a run."""
    wanted = sorted(set(turns))
    if not wanted:
        return {}
    rows = session.execute(
        select(MemoryNode.turn, MemoryNode.id).where(
            MemoryNode.run_id == run_id, MemoryNode.kind == "message", MemoryNode.turn.in_(wanted)
        )
    ).all()
    return {turn: node_id for turn, node_id in rows}


def resolve_manifest(
    manifest: list[dict[str, Any]], ids: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Manifest entries may name nodes of the edit committed with them by key (``node_keys``):
    those become ids, so every stored manifest points at rows."""
    resolved = []
    for entry in manifest:
        keys = entry.get("node_keys")
        if keys is not None:
            entry = {k: v for k, v in entry.items() if k != "node_keys"}
            entry["node_ids"] = [*entry.get("node_ids", []), *(ids[k] for k in keys)]
        resolved.append(entry)
    return resolved
