"""Reading and writing runs. Every write is one short transaction; a turn is one transaction.

The orchestrator hands over plain values (``TurnRecord``, ``CallRecord``); ids and rows stay here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from personae import __version__
from personae.errors import StoreError, UserError
from personae.llm.base import ChatMessage, Usage
from personae.store.db import Engines, database_url, display_path, open_engines, open_readonly
from personae.store.graph_rows import (
    MESSAGE_KEY,
    GraphEdit,
    Transaction,
    MessageFacts,
    NodeIds,
    add_message_node,
    apply_edit,
    message_nodes,
    resolve_manifest,
)
from personae.store.models import LLMCall, MemoryEdge, MemoryNode, Message, Run, RunPersona
from personae.store.rows import Statements, fetch_one, insert_row, insert_rows

# The per-turn writes bypass the ORM (its unit of work was most of a turn's cost) and run as
# statements compiled once on the models' tables, with the same types, so the same stored values.
RUNS: Table = Run.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
CALLS: Table = LLMCall.__table__  # type: ignore[assignment]


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def prompt_hash(messages: Sequence[ChatMessage], schema: dict[str, Any] | None = None) -> str:
    """A stable fingerprint of what the model was asked; replay compares these."""
    return _hash_prompt([m.to_dict() for m in messages], schema)


def _hash_prompt(prompt: list[dict[str, str]], schema: dict[str, Any] | None) -> str:
    """``prompt_hash`` of messages already in their stored form."""
    payload = {"messages": prompt, "schema": schema}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


NO_USAGE = Usage(prompt_tokens=0, evaluated_tokens=0, completion_tokens=0)


@dataclass(frozen=True)
class CallRecord:
    """One model call as the orchestrator saw it."""

    purpose: str
    persona: str | None
    backend: str
    model: str
    options: dict[str, Any]
    prompt: tuple[ChatMessage, ...]
    manifest: list[dict[str, Any]]
    response: str | None
    usage: Usage = NO_USAGE  # what the server reported; zero until it answered
    wall_ns: int = 0  # as Personae saw it, server time and all
    done_reason: str | None = None
    schema: dict[str, Any] | None = None
    error: str | None = None
    turn: int | None = None


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    persona: str
    phase: str | None
    content: str
    thinking: str | None = None
    raw: str | None = None
    cut: str | None = None
    structured: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewRun:
    scenario_name: str
    scenario_path: str | None
    scenario_yaml: str
    backend: str
    model: str
    layout: str
    num_ctx: int
    max_turns: int
    seed: int | None
    personas: list[tuple[str, int | None, str, dict[str, Any]]] = field(default_factory=list)
    # (name, roster position or None, source, resolved definition)
    parent_run_id: int | None = None  # set for a fork: the run it continues
    fork_turn: int | None = None  # the parent's last turn it copied


@dataclass(frozen=True)
class SearchHit:
    run_id: int
    turn: int
    persona: str
    snippet: str
    text: str = ""  # the whole message, so identical hits (a fork's copied turns) can be grouped


@dataclass(frozen=True)
class MemoryHit:
    run_id: int
    node_id: int
    kind: str
    turn: int | None
    snippet: str
    text: str = ""  # the node's whole text: documents re-imported by every run are one passage


@dataclass(frozen=True)
class RunTotals:
    """A run's counters as stored in its ``runs`` row."""

    turns: int
    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CommittedTurn:
    """What committing a turn returns: the message's id, and the run's totals as that same
    transaction left them (so the run loop need not read the run row back)."""

    message_id: int
    totals: RunTotals


class Store:
    """A Personae database. Open with ``Store.open(db)``; ``db`` as in ``database_url``."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self.url = engines.url
        self.notice = engines.notice
        self._node_ids = NodeIds()  # memory-graph ids every turn needs; see NodeIds
        self._statements = Statements(engines.write.dialect, engines.where)  # per-turn SQL, compiled once

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None) -> Store:
        return cls(open_engines(database_url(db)))

    @classmethod
    def open_readonly(cls, db: str | os.PathLike[str] | None = None) -> Store:
        """For commands that only read: never creates, upgrades or writes the database."""
        return cls(open_readonly(database_url(db)))

    @property
    def path(self) -> str:
        return display_path(self.url)

    def close(self) -> None:
        self._node_ids.clear()
        self.engines.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------
    def create_run(self, new: NewRun) -> int:
        now = utcnow()
        with Session(self.engines.write) as session, session.begin():
            run = Run(
                scenario_name=new.scenario_name,
                scenario_path=new.scenario_path,
                scenario_yaml=new.scenario_yaml,
                status="running",
                backend=new.backend,
                model=new.model,
                layout=new.layout,
                num_ctx=new.num_ctx,
                max_turns=new.max_turns,
                seed=new.seed,
                started_at=now,
                heartbeat_at=now,
                pid=os.getpid(),
                turns=0,
                prompt_tokens=0,
                evaluated_tokens=0,
                completion_tokens=0,
                personae_version=__version__,
                parent_run_id=new.parent_run_id,
                fork_turn=new.fork_turn,
            )
            session.add(run)
            session.flush()
            for name, position, source, definition in new.personas:
                session.add(
                    RunPersona(
                        run_id=run.id,
                        name=name,
                        position=position,
                        source=source,
                        definition=definition,
                    )
                )
            return run.id

    @contextmanager
    def _writing(self) -> Iterator[Transaction]:
        """One write transaction (BEGIN IMMEDIATE). Node ids it reads or makes are remembered only
        once it has committed, so a rolled-back transaction leaves nothing behind in memory."""
        with self.engines.write.begin() as connection:
            tx = Transaction(connection, self._statements, self._node_ids)
            yield tx
        self._node_ids.merge(tx.learned)

    def commit_turn(
        self,
        run_id: int,
        turn: TurnRecord,
        calls: Sequence[CallRecord],
        graph: GraphEdit | None = None,
    ) -> CommittedTurn:
        """The message, the calls that produced it, its memory-graph node (with ``graph``'s
        additions; the key ``"message"`` names that node) and the run's totals: all or nothing.
        Returns the message's id and the run's totals as this transaction left them."""
        now = utcnow()
        with self._writing() as tx:
            message_id = insert_row(tx.connection, tx.statements, MESSAGES, {
                "run_id": run_id,
                "turn": turn.turn,
                "persona": turn.persona,
                "phase": turn.phase,
                "content": turn.content,
                "thinking": turn.thinking,
                "raw": turn.raw,
                "cut": turn.cut,
                "structured": turn.structured,
                "meta": turn.meta,
                "created_at": now,
            })
            facts = MessageFacts(
                message_id, turn.turn, turn.persona, turn.phase, turn.content, turn.meta
            )
            node = add_message_node(tx, run_id, facts)
            if graph:
                apply_edit(tx, run_id, graph, {MESSAGE_KEY: node})
            insert_rows(
                tx.connection, tx.statements, CALLS,
                [_call_row(run_id, c, message_id, now) for c in calls],
            )
            totals = _add_totals(tx, run_id, calls, now, turns=1)
        return CommittedTurn(message_id, totals)

    def record_call(self, run_id: int, call: CallRecord) -> int:
        """A call that produced no message (a failed call, a selection, a collapse)."""
        now = utcnow()
        with self._writing() as tx:
            call_id = insert_row(
                tx.connection, tx.statements, CALLS, _call_row(run_id, call, None, now)
            )
            _add_totals(tx, run_id, [call], now)
            return call_id

    def commit_collapse(
        self, run_id: int, edit: GraphEdit, calls: Sequence[CallRecord]
    ) -> dict[str, int]:
        """A collapse: its summary, facts and edges, and the model calls it made, all or nothing.
        Returns the edit's node keys with their ids."""
        now = utcnow()
        with self._writing() as tx:
            ids = apply_edit(tx, run_id, edit)
            insert_rows(tx.connection, tx.statements, CALLS, [
                _call_row(run_id, replace(c, manifest=resolve_manifest(c.manifest, ids)), None, now)
                for c in calls
            ])
            _add_totals(tx, run_id, calls, now)
            return ids

    def add_graph(self, run_id: int, edit: GraphEdit) -> dict[str, int]:
        """Graph additions that belong to no turn (imported documents), in one transaction."""
        with self._writing() as tx:
            return apply_edit(tx, run_id, edit)

    def finish_run(
        self, run_id: int, status: str, *, stop_reason: str | None = None, error: str | None = None
    ) -> None:
        try:
            self._finish(run_id, status, stop_reason, error)
        except StoreError:
            # A full disk refuses even this small update while the write-ahead log holds the
            # run's last pages: fold the log into the file, which frees its space, and try once
            # more (a run left "running" is resumable too, only less clearly so).
            if not self._fold_wal():
                raise
            self._finish(run_id, status, stop_reason, error)

    def _fold_wal(self) -> bool:
        if self.engines.write.dialect.name != "sqlite":
            return False
        raw = self.engines.write.raw_connection()  # outside any transaction, as SQLite needs
        try:
            busy, _log, _moved = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception:  # noqa: BLE001 - no room even for that: the caller's error stands
            return False
        finally:
            raw.close()
        return not busy

    def _finish(self, run_id: int, status: str, stop_reason: str | None, error: str | None) -> None:
        with self.engines.write.begin() as connection:
            connection.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id)
                .values(
                    status=status,
                    stop_reason=stop_reason,
                    error=error,
                    finished_at=utcnow(),
                    pid=None,
                )
            )

    def replace_scenario(self, run_id: int, scenario_yaml: str, scenario_path: str | None) -> None:
        """The scenario a resumed run goes on with (``resume --scenario``, after fixing a rule);
        stored, so that later resumes and ``replay`` use what the turns were made with."""
        with self.engines.write.begin() as connection:
            connection.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id)
                .values(scenario_yaml=scenario_yaml, scenario_path=scenario_path)
            )

    def claim_run(self, run_id: int, *, expected_status: str, expected_pid: int | None) -> bool:
        """Mark a run ``running`` in this process, only if nobody changed it since it was read:
        of two ``resume`` commands racing for one run, exactly one wins."""
        pid_matches = RUNS.c.pid.is_(None) if expected_pid is None else RUNS.c.pid == expected_pid
        with self.engines.write.begin() as connection:
            result = connection.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.status == expected_status, pid_matches)
                .values(
                    status="running",
                    stop_reason=None,
                    error=None,
                    finished_at=None,
                    pid=os.getpid(),
                    heartbeat_at=utcnow(),
                )
            )
            return bool(result.rowcount)

    def delete_runs(self, run_ids: Sequence[int]) -> None:
        """Delete runs with everything that belongs to them (messages, calls, memory, personas;
        forks of them are kept, unlinked), all in one transaction: every id must exist."""
        ids = sorted(set(run_ids))
        with self.engines.write.begin() as connection:
            found = set(connection.execute(select(RUNS.c.id).where(RUNS.c.id.in_(ids))).scalars())
            missing = [i for i in ids if i not in found]
            if missing:
                last = connection.execute(select(func.max(RUNS.c.id))).scalar()
                hint = f"run ids go from 1 to {last}" if last else "this database has no runs"
                raise UserError(
                    f"No run {', '.join(map(str, missing))} in {self.path} ({hint}); nothing was "
                    "deleted. List them with: personae runs"
                )
            connection.execute(RUNS.delete().where(RUNS.c.id.in_(ids)))

    # -- reads ------------------------------------------------------------------------------
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
            row = connection.execute(select(*_TOTALS).where(RUNS.c.id == run_id)).one_or_none()
        if row is None:
            self.run(run_id)  # raises the error that explains which ids exist
        return RunTotals(*row)  # type: ignore[misc]

    def runs(self, limit: int | None = None) -> list[Run]:
        with Session(self.engines.read) as session:
            query = select(Run).order_by(Run.id.desc())
            if limit:
                query = query.limit(limit)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def messages(self, run_id: int) -> list[Message]:
        with Session(self.engines.read) as session:
            rows = list(
                session.scalars(select(Message).where(Message.run_id == run_id).order_by(Message.turn))
            )
            session.expunge_all()
            return rows

    def calls(self, run_id: int, purpose: str | None = None) -> list[LLMCall]:
        with Session(self.engines.read) as session:
            query = select(LLMCall).where(LLMCall.run_id == run_id)
            if purpose:
                query = query.where(LLMCall.purpose == purpose)
            rows = list(session.scalars(query.order_by(LLMCall.id)))
            session.expunge_all()
            return rows

    def run_personas(self, run_id: int) -> list[RunPersona]:
        with Session(self.engines.read) as session:
            rows = list(
                session.scalars(
                    select(RunPersona).where(RunPersona.run_id == run_id).order_by(RunPersona.id)
                )
            )
            session.expunge_all()
            return rows

    def memory_nodes(
        self, run_id: int, kinds: Sequence[str] | None = None, *, upto_turn: int | None = None
    ) -> list[MemoryNode]:
        """A run's memory nodes in creation order; ``upto_turn``: those made by that turn."""
        with Session(self.engines.read) as session:
            query = select(MemoryNode).where(MemoryNode.run_id == run_id)
            if kinds:
                query = query.where(MemoryNode.kind.in_(list(kinds)))
            if upto_turn is not None:
                query = query.where(MemoryNode.turn <= upto_turn)
            rows = list(session.scalars(query.order_by(MemoryNode.id)))
            session.expunge_all()
            return rows

    def memory_edges(self, run_id: int, kinds: Sequence[str] | None = None) -> list[MemoryEdge]:
        with Session(self.engines.read) as session:
            query = select(MemoryEdge).where(MemoryEdge.run_id == run_id)
            if kinds:
                query = query.where(MemoryEdge.kind.in_(list(kinds)))
            rows = list(session.scalars(query.order_by(MemoryEdge.id)))
            session.expunge_all()
            return rows

    def message_node_ids(self, run_id: int, turns: Sequence[int]) -> dict[int, int]:
        """turn -> the id of that message's memory node."""
        with self.engines.read.connect() as connection:
            return message_nodes(connection, run_id, turns)

    def search_memory(
        self, query: str, *, run_id: int | None = None, limit: int = 20
    ) -> list[MemoryHit]:
        """Full-text search over memory: summaries, facts, decisions, questions, documents."""
        sql = (
            "SELECT n.run_id, n.id, n.kind, n.turn, "
            "snippet(memory_fts, 0, '[', ']', '…', 12) AS snip, n.text "
            "FROM memory_fts JOIN memory_nodes n ON n.id = memory_fts.rowid "
            "WHERE memory_fts MATCH :q" + (" AND n.run_id = :run" if run_id else "") +
            " ORDER BY bm25(memory_fts) LIMIT :limit"
        )
        params: dict[str, Any] = {"limit": limit}
        if run_id:
            params["run"] = run_id
        rows = self._match(sql, query, params)
        return [
            MemoryHit(run_id=r[0], node_id=r[1], kind=r[2], turn=r[3], snippet=r[4], text=r[5])
            for r in rows
        ]

    def _match(self, sql: str, query: str, params: dict[str, Any]) -> Sequence[Any]:
        """Run a MATCH query with the user's words as FTS5 syntax (phrases, OR, NOT, prefix*,
        NEAR); a query FTS5 cannot parse is searched again as literal words, never an error."""
        with self.engines.read.connect() as connection:
            if query.strip():
                try:
                    return connection.execute(text(sql), {**params, "q": query}).all()
                except OperationalError:  # fts5: syntax error, no such column (a stray `word:`)
                    pass  # a failed SELECT leaves SQLite's read transaction usable
            return connection.execute(text(sql), {**params, "q": fts_query(query)}).all()

    def search(self, query: str, *, run_id: int | None = None, limit: int = 20) -> list[SearchHit]:
        """Full-text search over every transcript (SQLite FTS5, ranked by BM25)."""
        if run_id:
            sql = (
                "SELECT m.run_id, m.turn, m.persona, "
                "snippet(messages_fts, 0, '[', ']', '…', 12) AS snip, m.content "
                "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "WHERE messages_fts MATCH :q AND m.run_id = :run "
                "ORDER BY bm25(messages_fts) LIMIT :limit"
            )
        else:
            # ORDER BY rank inside FTS5 (rank is bm25) lets it sort before the join and build
            # snippets for the returned rows only: 2x faster on 1,000,000 messages
            # (benchmarks/scale.py). With a run filter the plain join above stays faster.
            sql = (
                "SELECT m.run_id, m.turn, m.persona, f.snip, m.content FROM ("
                "SELECT rowid AS id, rank, snippet(messages_fts, 0, '[', ']', '…', 12) AS snip "
                "FROM messages_fts WHERE messages_fts MATCH :q ORDER BY rank LIMIT :limit"
                ") AS f JOIN messages m ON m.id = f.id ORDER BY f.rank"
            )
        params: dict[str, Any] = {"limit": limit}
        if run_id:
            params["run"] = run_id
        rows = self._match(sql, query, params)
        return [
            SearchHit(run_id=r[0], turn=r[1], persona=r[2], snippet=r[3], text=r[4]) for r in rows
        ]


def fts_query(query: str) -> str:
    """Words as FTS5 terms, quoted: the fallback for a query that is not valid FTS5 syntax."""
    words = [w.replace('"', '""') for w in query.split() if w.strip()]
    return " ".join(f'"{w}"' for w in words) or '""'


_TOTALS = (RUNS.c.turns, RUNS.c.prompt_tokens, RUNS.c.evaluated_tokens, RUNS.c.completion_tokens)

# Built once, so it compiles once (see ``rows.py``).
_ADD_TOTALS = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run"))
    .values(
        turns=RUNS.c.turns + bindparam("add_turns"),
        prompt_tokens=RUNS.c.prompt_tokens + bindparam("add_prompt"),
        evaluated_tokens=RUNS.c.evaluated_tokens + bindparam("add_evaluated"),
        completion_tokens=RUNS.c.completion_tokens + bindparam("add_completion"),
        heartbeat_at=bindparam("now", type_=RUNS.c.heartbeat_at.type),
    )
    .returning(*_TOTALS)
)


def _add_totals(
    tx: Transaction,
    run_id: int,
    calls: Sequence[CallRecord],
    now: datetime,
    *,
    turns: int = 0,
) -> RunTotals:
    """Add ``calls``' token counts (and ``turns``) to the run's row, refresh its heartbeat and
    return the totals as they now stand in this transaction."""
    row = fetch_one(tx.connection, tx.statements, _ADD_TOTALS, {
        "run": run_id,
        "add_turns": turns,
        "add_prompt": sum(c.usage.prompt_tokens for c in calls),
        "add_evaluated": sum(c.usage.evaluated_tokens for c in calls),
        "add_completion": sum(c.usage.completion_tokens for c in calls),
        "now": now,
    })
    return RunTotals(*row)


def _call_row(
    run_id: int, call: CallRecord, message_id: int | None, now: datetime
) -> dict[str, Any]:
    """An ``llm_calls`` row as Core parameters (column names, so ``json_schema``)."""
    prompt = [m.to_dict() for m in call.prompt]  # stored, and hashed: made once
    usage = call.usage
    return {
        "run_id": run_id,
        "message_id": message_id,
        "turn": call.turn,
        "purpose": call.purpose,
        "persona": call.persona,
        "backend": call.backend,
        "model": call.model,
        "options": call.options,
        "prompt": prompt,
        "prompt_hash": _hash_prompt(prompt, call.schema),
        "json_schema": call.schema,
        "manifest": call.manifest,
        "response": call.response,
        "done_reason": call.done_reason,
        "prompt_tokens": usage.prompt_tokens,
        "evaluated_tokens": usage.evaluated_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_ns": usage.total_ns,
        "load_ns": usage.load_ns,
        "prompt_eval_ns": usage.prompt_eval_ns,
        "eval_ns": usage.eval_ns,
        "wall_ns": call.wall_ns,
        "error": call.error,
        "created_at": now,
    }
