"""A database file deleted or replaced under a running run is noticed at the next write (issue
21, item 10): the run stops with a clear message, and nothing of it is written into a file that
never had it. Real SQLite files; the scripted backend moves the file between two turns."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from personae.errors import DatabaseMoved
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store
from tests.durable_support import scenario_text, start

TEXT = scenario_text("memory: {collapse: null}\ntermination: {max_turns: 6}\n")


def moving_at(turn: int, move: Callable[[], None]) -> ScriptedBackend:
    asked = 0

    def reply(_request: ChatRequest) -> str:
        nonlocal asked
        asked += 1
        if asked == turn:
            move()
        return f"Point number {asked} about the cache."

    return ScriptedBackend(default=reply)


def test_a_database_deleted_under_a_run_stops_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store, run_id, orchestrator = start(db, TEXT, moving_at(3, lambda: db.unlink()))
    with pytest.raises(DatabaseMoved, match="was deleted while this run was writing"):
        list(orchestrator.run(run_id))
    assert not db.exists()  # nothing re-created it
    store.close()


def test_a_database_replaced_under_a_run_gets_none_of_its_writes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    other = tmp_path / "other.db"
    Store.open(other).close()  # a Personae database without this run

    def replace() -> None:
        shutil.copy(other, tmp_path / "swap.db")
        (tmp_path / "swap.db").replace(db)

    store, run_id, orchestrator = start(db, TEXT, moving_at(3, replace))
    with pytest.raises(DatabaseMoved, match="replaced by another file"):
        list(orchestrator.run(run_id))
    store.close()
    # The old file's write-ahead log stays beside the path, so a reader may still see the first
    # two turns through it; what must not be there is anything written after the swap.
    with sqlite3.connect(db) as connection:
        turns = [r[0] for r in connection.execute("select turn from messages order by turn")]
        statuses = [r[0] for r in connection.execute("select status from runs")]
    assert turns in ([], [1, 2]) and "failed" not in statuses


def test_a_database_left_in_place_is_written_as_before(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store, run_id, orchestrator = start(db, TEXT, moving_at(3, lambda: None))
    list(orchestrator.run(run_id))
    assert (store.run(run_id).status, len(store.messages(run_id))) == ("completed", 6)
    store.close()
