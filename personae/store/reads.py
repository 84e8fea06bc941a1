"""Reading a Personae database: runs, transcripts, calls, memory, search.

``Reader`` is everything a command that only looks needs; ``Store`` (``repo.py``) adds the writes.
Rows come back as detached ORM objects (``Run``, ``Message`` …), safe to use after the session.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Self, TypeVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from personae.errors import UserError
from personae.store.call_rows import TOTALS
from personae.store.db import Engines, database_url, display_path, open_readonly
from personae.store.graph_rows import message_nodes
from personae.store.listing import runs_statement, turns_statement
from personae.store.models import RUNS, LLMCall, MemoryEdge, MemoryNode, Message, Run, RunPersona
from personae.store.records import MemoryHit, RunTotals, SearchHit
from personae.store.search import search_memory, search_messages

T = TypeVar("T")


class Reader:
    """A Personae database, for reading. ``Store.open(db)`` opens one to write as well (creating
    or upgrading it); ``open_readonly(db)`` never changes it. ``db`` as in ``database_url``."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self.url = engines.url
        self.notice = engines.notice

    @classmethod
    def open_readonly(cls, db: str | os.PathLike[str] | None = None) -> Self:
        """For commands that only read: never creates, upgrades or writes the database."""
        return cls(open_readonly(database_url(db)))

    @property
    def path(self) -> str:
        return display_path(self.url)

    def close(self) -> None:
        self.engines.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def run(self, run_id: int) -> Run:
        with Session(self.engines.read) as session:
            run = session.get(Run, run_id)
            if run is None:
                last = session.scalar(select(func.max(Run.id)))
                hint = f"run ids go from 1 to {last}" if last else "this database has no runs yet"
                raise UserError(
                    f"No run {run_id} in {self.path} ({hint}). List them with: personae runs"
                )
            session.expunge(run)
            return run

    def totals(self, run_id: int) -> RunTotals:
        """The run's counters, without loading the whole row (the scenario YAML and all)."""
        with self.engines.read.connect() as connection:
            row = connection.execute(select(*TOTALS).where(RUNS.c.id == run_id)).one_or_none()
        if row is None:
            self.run(run_id)  # raises the error that explains which ids exist
        return RunTotals(*row)  # type: ignore[misc]

    def runs(self, limit: int | None = None) -> list[Run]:
        """The newest ``limit`` runs (all when None); ``store/quick.py`` reads the same statement."""
        query = runs_statement()
        if limit:
            query = query.limit(limit)
        return self._rows(query)

    def persona_turns(self, run_ids: Sequence[int], *, human: str) -> dict[int, int]:
        """Each run's turns as policies and ``max_turns`` count them: its messages not written by
        ``human`` (User, ``config.names.HUMAN``; ``runs.turns`` counts every message)."""
        if not run_ids:
            return {}
        bounds = {"first": min(run_ids), "last": max(run_ids), "human": human}
        with Session(self.engines.read) as session:
            found = {int(r): int(n) for r, n in session.execute(turns_statement(), bounds).all()}
        return {int(r): found.get(int(r), 0) for r in run_ids}

    def messages(self, run_id: int) -> list[Message]:
        return self._rows(select(Message).where(Message.run_id == run_id).order_by(Message.turn))

    def calls(self, run_id: int, purpose: str | None = None) -> list[LLMCall]:
        query = select(LLMCall).where(LLMCall.run_id == run_id)
        if purpose:
            query = query.where(LLMCall.purpose == purpose)
        return self._rows(query.order_by(LLMCall.id))

    def run_personas(self, run_id: int) -> list[RunPersona]:
        return self._rows(
            select(RunPersona).where(RunPersona.run_id == run_id).order_by(RunPersona.id)
        )

    def memory_nodes(
        self,
        run_id: int,
        kinds: Sequence[str] | None = None,
        *,
        upto_turn: int | None = None,
        after_id: int | None = None,
        ids: Sequence[int] = (),
    ) -> list[MemoryNode]:
        """A run's memory nodes in creation order; ``upto_turn``: those made by that turn;
        ``after_id``: only those newer than that node, and those named in ``ids``."""
        query = select(MemoryNode).where(MemoryNode.run_id == run_id)
        if kinds:
            query = query.where(MemoryNode.kind.in_(list(kinds)))
        if upto_turn is not None:
            query = query.where(MemoryNode.turn <= upto_turn)
        if after_id is not None:
            query = query.where(or_(MemoryNode.id > after_id, MemoryNode.id.in_(list(ids))))
        return self._rows(query.order_by(MemoryNode.id))

    def memory_edges(
        self,
        run_id: int,
        kinds: Sequence[str] | None = None,
        *,
        to_kinds: Sequence[str] | None = None,
        after_id: int | None = None,
    ) -> list[MemoryEdge]:
        """A run's edges in creation order; ``to_kinds``: only those pointing at nodes of these
        kinds (a memory view needs no edge onto a message node, and those grow with the
        transcript); ``after_id``: only those newer than that edge."""
        query = select(MemoryEdge).where(MemoryEdge.run_id == run_id)
        if after_id is not None:
            query = query.where(MemoryEdge.id > after_id)
        if kinds:
            query = query.where(MemoryEdge.kind.in_(list(kinds)))
        if to_kinds:
            targets = select(MemoryNode.id).where(
                MemoryNode.run_id == run_id, MemoryNode.kind.in_(list(to_kinds))
            )
            query = query.where(MemoryEdge.dst.in_(targets))
        return self._rows(query.order_by(MemoryEdge.id))

    def message_node_ids(self, run_id: int, turns: Sequence[int]) -> dict[int, int]:
        """turn -> the id of that message's memory node."""
        with self.engines.read.connect() as connection:
            return message_nodes(connection, run_id, turns)

    def search(self, query: str, *, run_id: int | None = None, limit: int = 20) -> list[SearchHit]:
        """Full-text search over every transcript (SQLite FTS5, ranked by BM25)."""
        return search_messages(self.engines.read, query, run_id=run_id, limit=limit)

    def search_memory(
        self, query: str, *, run_id: int | None = None, limit: int = 20
    ) -> list[MemoryHit]:
        """Full-text search over memory: summaries, facts, decisions, questions, documents."""
        return search_memory(self.engines.read, query, run_id=run_id, limit=limit)

    def _rows(self, query: Select[T]) -> list[T]:
        """The ORM objects a select returns, detached from their (closed) session."""
        with Session(self.engines.read) as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows
