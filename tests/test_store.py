"""The store on a real SQLite file: one transaction per turn, totals, search, plain-SQL access."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from personae.errors import StoreError, UserError
from personae.llm.base import ChatMessage, Usage
from personae.store.repo import CallRecord, NewRun, Store, TurnRecord, prompt_hash


def new_run(store: Store) -> int:
    return store.create_run(
        NewRun(
            scenario_name="s", scenario_path=None, scenario_yaml="name: s", backend="scripted",
            model="m", layout="cache_friendly", num_ctx=2048, max_turns=4, seed=None,
            personas=[("Critic", 0, "builtin", {"name": "Critic"})],
        )
    )


def call(tokens: int = 10) -> CallRecord:
    return CallRecord(
        purpose="turn", persona="Critic", backend="scripted", model="m", options={"num_ctx": 2048},
        prompt=(ChatMessage("user", "hi"),), manifest=[], response="ok",
        usage=Usage(prompt_tokens=tokens, evaluated_tokens=tokens // 2, completion_tokens=3), turn=1,
    )


def test_turn_is_one_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "Critic", None, "Redis helps reads."), [call()])
    # The same turn twice: nothing of the second attempt stays.
    with pytest.raises(StoreError, match="Another process wrote"):
        store.commit_turn(run_id, TurnRecord(1, "Critic", None, "dup"), [call(99)])
    run = store.run(run_id)
    assert (run.turns, run.prompt_tokens, run.evaluated_tokens, run.completion_tokens) == (1, 10, 5, 3)
    assert len(store.calls(run_id)) == 1 and len(store.messages(run_id)) == 1


def test_wal_mode_and_plain_sql(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "Critic", "debate", "Кэш нужен."), [call()])
    connection = sqlite3.connect(db)
    assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert connection.execute("select persona, phase, content from messages").fetchall() == [
        ("Critic", "debate", "Кэш нужен.")
    ]
    stored = connection.execute("select prompt_hash from llm_calls").fetchone()[0]
    assert stored == prompt_hash((ChatMessage("user", "hi"),))


def test_search_ranks_and_tolerates_punctuation(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "Critic", None, "The eviction policy is LRU."), [call()])
    store.commit_turn(run_id, TurnRecord(2, "Critic", None, "Latency matters more."), [call()])
    hits = store.search("eviction policy")
    assert [(h.turn, h.persona) for h in hits] == [(1, "Critic")] and "[eviction]" in hits[0].snippet
    assert [h.turn for h in store.search('"policy)')] == [1]  # FTS syntax in input is just text
    assert store.search("nothing-like-this") == []


def test_unknown_run_is_a_user_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    with pytest.raises(UserError, match="No run 3"):
        store.run(3)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "no" / "such" / "t.db")


def test_finish_and_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    store.finish_run(run_id, "completed", stop_reason="max_turns")
    store.close()
    again = Store.open(tmp_path / "t.db")
    assert again.notice is None  # already at head: no migration, no backup
    run = again.run(run_id)
    assert (run.status, run.stop_reason, run.finished_at is not None) == ("completed", "max_turns", True)
    assert [p.name for p in again.run_personas(run_id)] == ["Critic"]
