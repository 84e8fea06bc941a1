"""Writing and reading the memory graph's rows (``memory_nodes``, ``memory_edges``).

The orchestrator describes what a turn or a collapse adds to the graph as a plain ``GraphEdit``
(nodes with local keys, edges between keys or existing node ids, facts to close); the store applies
it inside the transaction that commits the turn or the collapse, so the graph never disagrees with
the transcript. Every committed message gets its node here, with ``authored_by`` (to its persona)
and ``replies_to`` (to the message before it), whoever commits it; a message whose meta says
``pin`` (a pinned scenario input) also becomes a fact, ``derived_from`` it. The two node ids every
turn needs (its persona's node, the previous message's node) are remembered per run (``NodeIds``)
rather than queried each turn, and rows go in as statements compiled once (``rows.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from personae.store.models import EDGES, NODES
from personae.store.rows import Statements, insert_row, insert_rows

# Looked up only when ``NodeIds`` does not know the answer yet (a new process, a new persona).
_PERSONA_NODE = select(NODES.c.id).where(
    NODES.c.run_id == bindparam("run"), NODES.c.kind == "persona", NODES.c.text == bindparam("name")
)
_MESSAGE_NODE = select(NODES.c.id).where(
    NODES.c.run_id == bindparam("run"), NODES.c.kind == "message", NODES.c.turn == bindparam("turn")
)

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

    def __bool__(self) -> bool:
        return bool(self.nodes or self.edges or self.close)


@dataclass
class NodeIds:
    """Node ids the graph writer needs on every turn, remembered per run so a turn costs no
    query: each persona's node (nodes are never deleted) and the newest message node (the next
    turn ``replies_to`` it). Only ids read or written by a *committed* transaction are kept: a
    transaction collects its ids in a ``learned`` NodeIds that the store merges after the commit,
    so a rolled-back turn never leaves behind the id of a row that does not exist. A miss falls
    back to a query, so a cache that knows nothing (a new process, a resumed run) is only slower."""

    personas: dict[tuple[int, str], int] = field(default_factory=dict)  # (run, name) -> node
    last_message: dict[int, tuple[int, int]] = field(default_factory=dict)  # run -> (turn, node)

    def merge(self, learned: NodeIds) -> None:
        self.personas.update(learned.personas)
        self.last_message.update(learned.last_message)

    def clear(self) -> None:
        self.personas.clear()
        self.last_message.clear()


@dataclass(frozen=True)
class Transaction:
    """A write transaction of the store in progress: its connection, the store's compiled
    statements, the node ids known before it began and those it has learned so far."""

    connection: Connection
    statements: Statements
    known: NodeIds
    learned: NodeIds = field(default_factory=NodeIds)


@dataclass(frozen=True)
class MessageFacts:
    """What the graph needs of a message just inserted (plain values, not an ORM row)."""

    id: int
    turn: int
    persona: str
    phase: str | None
    content: str
    meta: dict[str, Any] | None


def apply_edit(
    tx: Transaction, run_id: int, edit: GraphEdit, keys: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Insert the edit's nodes and edges; returns every key with its new node id."""
    ids: dict[str, int] = dict(keys or {})
    for spec in edit.nodes:
        if spec.key in ids:
            raise ValueError(f"node key {spec.key!r} used twice in one graph edit")
        ids[spec.key] = insert_row(tx.connection, tx.statements, NODES, {
            "run_id": run_id,
            "kind": spec.kind,
            "level": spec.level,
            "text": spec.text,
            "data": spec.data,
            "turn": spec.turn,
            "valid_from": spec.valid_from,
        })
    _add_edges(tx, [
        {
            "run_id": run_id,
            "src": _resolve(edge.src, ids),
            "dst": _resolve(edge.dst, ids),
            "kind": edge.kind,
            "turn": edge.turn,
        }
        for edge in edit.edges
    ])
    for node_id, turn in edit.close:
        tx.connection.execute(
            update(NODES)
            .where(NODES.c.id == node_id, NODES.c.run_id == run_id)
            .values(valid_to=turn)
        )
    return ids


def _resolve(ref: NodeRef, ids: Mapping[str, int]) -> int:
    if isinstance(ref, int):
        return ref
    try:
        return ids[ref]
    except KeyError:
        raise ValueError(f"graph edit refers to unknown node key {ref!r}") from None


def _add_edges(tx: Transaction, rows: Sequence[dict[str, Any]]) -> None:
    """Edges in the order given, one executemany, so their ids follow that order."""
    insert_rows(tx.connection, tx.statements, EDGES, rows)


def persona_node(tx: Transaction, run_id: int, name: str) -> int:
    """The persona's node in this run, made on first use (User and helpers included)."""
    for ids in (tx.known, tx.learned):
        cached = ids.personas.get((run_id, name))
        if cached is not None:
            return cached
    found = tx.connection.execute(_PERSONA_NODE, {"run": run_id, "name": name}).scalar()
    if found is None:
        found = insert_row(tx.connection, tx.statements, NODES, {
            "run_id": run_id, "kind": "persona", "text": name, "turn": 0,
        })
    tx.learned.personas[(run_id, name)] = found
    return found


def previous_message_node(tx: Transaction, run_id: int, turn: int) -> int | None:
    """The node of the message at ``turn - 1``, if there is one."""
    cached = tx.known.last_message.get(run_id)
    if cached is not None and cached[0] == turn - 1:
        return cached[1]
    return tx.connection.execute(_MESSAGE_NODE, {"run": run_id, "turn": turn - 1}).scalar()


def add_message_node(tx: Transaction, run_id: int, message: MessageFacts) -> int:
    """The message's node, ``authored_by`` its persona and ``replies_to`` the turn before it.
    Rows go in in the order the ORM used to write them (message node, persona node on first use,
    pinned fact, then the edges), so ids come out as they always did."""
    turn = message.turn
    node = insert_row(tx.connection, tx.statements, NODES, {
        "run_id": run_id,
        "kind": "message",
        "text": message.content[:MESSAGE_PREVIEW],
        "data": {"persona": message.persona, "phase": message.phase} if message.phase else None,
        "turn": turn,
        "message_id": message.id,
    })
    author = persona_node(tx, run_id, message.persona)
    edges = [{"run_id": run_id, "src": node, "dst": author, "kind": "authored_by", "turn": turn}]
    previous = previous_message_node(tx, run_id, turn)
    if previous is not None:
        edges.append(
            {"run_id": run_id, "src": node, "dst": previous, "kind": "replies_to", "turn": turn}
        )
    if (message.meta or {}).get("pin"):
        # A pinned input is a fact at once, whatever a summarizer later makes of it.
        fact = insert_row(tx.connection, tx.statements, NODES, {
            "run_id": run_id, "kind": "fact", "text": message.content, "turn": turn,
            "valid_from": turn, "data": {"pinned": True, "turns": [turn]},
        })
        edges.append(
            {"run_id": run_id, "src": fact, "dst": node, "kind": "derived_from", "turn": turn}
        )
    _add_edges(tx, edges)
    tx.learned.last_message[run_id] = (turn, node)
    return node


def message_nodes(connection: Connection, run_id: int, turns: Iterable[int]) -> dict[int, int]:
    """turn -> message node id, for the given turns of a run."""
    wanted = sorted(set(turns))
    if not wanted:
        return {}
    rows = connection.execute(
        select(NODES.c.turn, NODES.c.id).where(
            NODES.c.run_id == run_id, NODES.c.kind == "message", NODES.c.turn.in_(wanted)
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
