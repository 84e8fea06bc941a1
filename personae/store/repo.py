"""Writing runs. Every write is one short transaction; a turn is one transaction.

The orchestrator hands over plain values (``records.py``); ids and rows stay here. ``Store`` is a
``Reader`` (``reads.py``) that also writes. The records are importable from here too, as the rest
of Personae imports them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from personae import __version__
from personae.errors import DatabaseMoved, StoreError, UserError
from personae.llm.fingerprint import prompt_hash
from personae.store.call_rows import add_totals, call_row
from personae.store.db import Engines, database_url, file_identity, open_engines, sqlite_file
from personae.store.graph_rows import (
    MESSAGE_KEY,
    GraphEdit,
    MessageFacts,
    NodeIds,
    Transaction,
    add_message_node,
    apply_edit,
    resolve_manifest,
)
from personae.store.models import CALLS, MESSAGES, RUNS, VARIANTS, Run, RunPersona
from personae.store.reads import Reader
from personae.store.records import CallRecord, CommittedTurn, NewRun, RunTotals, TurnRecord
from personae.store.rows import Statements, insert_row, insert_rows

# Imported from here by most of Personae: the store and the values it takes.
__all__ = [
    "CallRecord", "CommittedTurn", "NewRun", "RunTotals", "Store", "TurnRecord", "prompt_hash",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store(Reader):
    """A Personae database, for reading and writing. Open with ``Store.open(db)``."""

    def __init__(self, engines: Engines) -> None:
        super().__init__(engines)
        self._node_ids = NodeIds()  # memory-graph ids every turn needs; see NodeIds
        self._statements = Statements(engines.write.dialect, engines.where)  # per-turn SQL, compiled once
        self._file = sqlite_file(engines.url)
        self._identity = file_identity(self._file) if self._file is not None else None

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None) -> Store:
        """Open ``db`` (as in ``database_url``) to read and write: created if missing, its schema
        upgraded if older (after a backup copy)."""
        return cls(open_engines(database_url(db)))

    def close(self) -> None:
        self._node_ids.clear()
        super().close()

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
                variables=new.variables,
                options=new.options,
            )
            session.add(run)
            session.flush()
            if new.batch_variant_id is not None:
                linked = session.connection().execute(
                    update(VARIANTS)
                    .where(VARIANTS.c.id == new.batch_variant_id, VARIANTS.c.run_id.is_(None))
                    .values(run_id=run.id)
                )
                if not linked.rowcount:  # another process started it: this one must not
                    raise StoreError(
                        f"Variant {new.batch_variant_id} of the sweep already has a run "
                        "(another `personae batch resume`?); nothing was started for it."
                    )
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
        self._require_same_file()
        with self.engines.write.begin() as connection:
            tx = Transaction(connection, self._statements, self._node_ids)
            yield tx
        self._node_ids.merge(tx.learned)

    def _require_same_file(self) -> None:
        """The heartbeat of every write: the file at the database's path must still be the one
        this store opened (same device and inode). Deleted, or replaced by another file (a
        restore, a copy over it), the run's writes would vanish with the unlinked file or land in
        a database that never had this run; either way the run must stop and say so."""
        if self._file is None or self._identity is None:
            return
        now = file_identity(self._file)
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        raise DatabaseMoved(
            f"The database {self._file} was {what} while this run was writing to it. Nothing "
            "more is written (it would be lost, or land in a database that never had this run). "
            "Put the original file back at that path and `personae resume` the run, or start it "
            "again on the database that is there now."
        )

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
                [call_row(run_id, c, message_id, now) for c in calls],
            )
            totals = add_totals(tx.connection, tx.statements, run_id, calls, now, turns=1)
        return CommittedTurn(message_id, totals)

    def record_call(self, run_id: int, call: CallRecord) -> int:
        """A call that produced no message (a failed call, a selection, a collapse)."""
        now = utcnow()
        with self._writing() as tx:
            call_id = insert_row(
                tx.connection, tx.statements, CALLS, call_row(run_id, call, None, now)
            )
            add_totals(tx.connection, tx.statements, run_id, [call], now)
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
                call_row(run_id, replace(c, manifest=resolve_manifest(c.manifest, ids)), None, now)
                for c in calls
            ])
            add_totals(tx.connection, tx.statements, run_id, calls, now)
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
        except DatabaseMoved:
            raise
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
        driver = raw.driver_connection
        assert driver is not None  # a live connection, just checked out
        try:
            busy, _log, _moved = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception:  # noqa: BLE001 - no room even for that: the caller's error stands
            return False
        finally:
            raw.close()
        return not busy

    def _finish(self, run_id: int, status: str, stop_reason: str | None, error: str | None) -> None:
        self._require_same_file()
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
