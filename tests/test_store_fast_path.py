"""The per-turn write path (compiled statements, remembered node ids, totals returned by the commit)
stores exactly what the ORM stored, forgets what a rolled-back turn learned, and keeps the database
the truth for stop rules and resume."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from personae.store import repo, rows

from personae.config import load_scenario_text
from personae.llm.base import ChatMessage, Usage
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.orchestrator.state import Stopped, TurnDone
from personae.store.graph_rows import EdgeSpec, GraphEdit, NodeSpec
from personae.store.models import Base
from personae.store.repo import CallRecord, NewRun, Store, TurnRecord


def new_run(store: Store) -> int:
    return store.create_run(NewRun(
        scenario_name="s", scenario_path=None, scenario_yaml="name: s", backend="scripted",
        model="m", layout="cache_friendly", num_ctx=2048, max_turns=9, seed=None,
    ))


def call(turn: int, tokens: int = 10) -> CallRecord:
    return CallRecord(
        purpose="turn", persona="Critic", backend="scripted", model="m", options={"num_ctx": 2048},
        prompt=(ChatMessage("user", "hi"),), manifest=[], response="ok",
        usage=Usage(prompt_tokens=tokens, evaluated_tokens=tokens // 2, completion_tokens=3), turn=turn,
    )


def edges(db: Path) -> list[tuple[str, str, str]]:
    """(kind, source node's kind and turn, target node's kind and text or turn), in id order."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT e.kind, s.kind || ' ' || s.turn, d.kind || ' ' || "
            "CASE d.kind WHEN 'persona' THEN d.text ELSE d.turn END "
            "FROM memory_edges e JOIN memory_nodes s ON s.id = e.src "
            "JOIN memory_nodes d ON d.id = e.dst ORDER BY e.id"
        ).fetchall()


def test_a_rolled_back_turn_leaves_no_remembered_node_ids(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "Critic", None, "Redis helps reads."), [call(1)])
    broken = GraphEdit(edges=(EdgeSpec("message", "nope", "supports", 2),))
    with pytest.raises(ValueError, match="unknown node key"):  # after Planner's node was made
        store.commit_turn(run_id, TurnRecord(2, "Planner", None, "Add Redis."), [], graph=broken)
    store.commit_turn(run_id, TurnRecord(2, "Planner", None, "Add Redis."), [call(2)])
    store.commit_turn(run_id, TurnRecord(3, "Critic", None, "Measure first."), [call(3)])
    assert edges(db) == [
        ("authored_by", "message 1", "persona Critic"),
        ("authored_by", "message 2", "persona Planner"),
        ("replies_to", "message 2", "message 1"),
        ("authored_by", "message 3", "persona Critic"),
        ("replies_to", "message 3", "message 2"),
    ]
    with sqlite3.connect(db) as connection:
        personas = connection.execute(
            "SELECT text, count(*) FROM memory_nodes WHERE kind = 'persona' GROUP BY text"
        ).fetchall()
    assert sorted(personas) == [("Critic", 1), ("Planner", 1)]


def test_another_store_on_the_file_continues_the_graph(tmp_path: Path) -> None:
    """A new process (here: a second Store) knows no ids yet and finds them in the database."""
    db = tmp_path / "t.db"
    first = Store.open(db)
    run_id = new_run(first)
    first.commit_turn(run_id, TurnRecord(1, "Critic", None, "one"), [call(1)])
    first.close()
    second = Store.open(db)
    second.commit_turn(run_id, TurnRecord(2, "Critic", None, "two"), [call(2)])
    assert edges(db)[-2:] == [
        ("authored_by", "message 2", "persona Critic"),
        ("replies_to", "message 2", "message 1"),
    ]
    with sqlite3.connect(db) as connection:
        assert connection.execute(
            "SELECT count(*) FROM memory_nodes WHERE kind = 'persona'"
        ).fetchone() == (1,)


def test_stored_values_are_the_ones_the_orm_wrote(tmp_path: Path) -> None:
    """JSON columns given None hold the JSON text 'null', columns never given stay SQL NULL, and
    datetimes are SQLAlchemy's text with microseconds: what the ORM stored before the fast path."""
    db = tmp_path / "t.db"
    store = Store.open(db)
    run_id = new_run(store)
    store.commit_turn(run_id, TurnRecord(1, "User", None, "Budget: 2.", meta={"pin": True}), [])
    store.commit_turn(run_id, TurnRecord(2, "Critic", "debate", "Кэш нужен."), [call(2)])
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
    with sqlite3.connect(db) as connection:
        message = connection.execute(
            "SELECT structured, meta, typeof(thinking), created_at FROM messages WHERE turn = 2"
        ).fetchone()
        assert message[:3] == ("null", "null", "null")  # the JSON text, then a SQL NULL
        assert stamp.match(message[3])
        call_row = connection.execute(
            "SELECT json_schema, options, prompt, typeof(error), created_at FROM llm_calls"
        ).fetchone()
        assert call_row[:4] == (
            "null", '{"num_ctx": 2048}', '[{"role": "user", "content": "hi"}]', "null"
        )
        assert stamp.match(call_row[4])
        nodes = connection.execute(
            "SELECT kind, text, data, typeof(data), turn, valid_from FROM memory_nodes ORDER BY id"
        ).fetchall()
        assert nodes == [
            ("message", "Budget: 2.", "null", "text", 1, None),
            ("persona", "User", None, "null", 0, None),
            ("fact", "Budget: 2.", '{"pinned": true, "turns": [1]}', "text", 1, 1),
            ("message", "Кэш нужен.", '{"persona": "Critic", "phase": "debate"}', "text", 2, None),
            ("persona", "Critic", None, "null", 0, None),
        ]
        assert stamp.match(connection.execute("SELECT heartbeat_at FROM runs").fetchone()[0])


def store_every_kind_of_write(db: Path) -> list[str]:
    """A run with each write the store makes; returns the SQL SQLAlchemy itself executed."""
    seen: list[str] = []
    with Store.open(db) as store:
        event.listen(store.engines.write, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: seen.append(statement))
        run_id = new_run(store)
        store.commit_turn(run_id, TurnRecord(1, "User", None, "Budget: 2.", meta={"pin": True}), [])
        store.commit_turn(run_id, TurnRecord(2, "Critic", "debate", "Кэш нужен.",
                                             structured={"ok": True}), [call(2), call(2, 7)])
        store.record_call(run_id, replace(call(3), response=None, error="the server failed"))
        fact = store.memory_nodes(run_id, ["fact"])[0].id
        message = store.message_node_ids(run_id, [2])[2]
        edit = GraphEdit(
            nodes=(NodeSpec("s", "summary", "They weigh a cache.", level=1, data={"turns": [1, 2]},
                            turn=2),
                   NodeSpec("f", "fact", "Budget: 3.", turn=2, valid_from=2)),
            edges=(EdgeSpec("s", message, "summarizes", 2), EdgeSpec("f", fact, "supersedes", 2)),
            close=((fact, 2),),
        )
        collapse = replace(call(3), purpose="collapse", manifest=[{"node_keys": ["s", "f"]}])
        store.commit_collapse(run_id, edit, [collapse])
        store.add_graph(run_id, GraphEdit(nodes=(NodeSpec("d", "document", "notes.md", turn=0),)))
        store.commit_turn(run_id, TurnRecord(3, "Critic", None, "Measure first."), [call(3)])
        store.finish_run(run_id, "completed", stop_reason="max_turns")
    return seen


def every_row(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as connection:
        return {
            table.name: connection.execute(f"SELECT * FROM {table.name} ORDER BY rowid").fetchall()
            for table in Base.metadata.sorted_tables
        }


def test_the_fast_path_and_plain_core_store_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other databases take the Core branch of rows.py; here it runs on a real SQLite file and
    must leave every table exactly as the compiled statements do."""
    monkeypatch.setattr(repo, "utcnow", lambda: datetime(2026, 1, 2, 3, 4, 5, 678901))
    fast_sql = store_every_kind_of_write(tmp_path / "fast.db")
    monkeypatch.setattr(rows, "use_fast_path", lambda _dialect: False)
    core_sql = store_every_kind_of_write(tmp_path / "core.db")
    # Each path did run: Core's inserts go through SQLAlchemy's cursor, the fast path's do not.
    assert not any(s.startswith("INSERT INTO llm_calls") for s in fast_sql)
    assert any(s.startswith("INSERT INTO llm_calls") for s in core_sql)
    fast, core = every_row(tmp_path / "fast.db"), every_row(tmp_path / "core.db")
    assert all(fast[name] for name in ("messages", "llm_calls", "memory_nodes", "memory_edges"))
    assert core == fast


def test_the_commit_returns_the_totals_it_wrote(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = new_run(store)
    store.record_call(run_id, call(1, tokens=4))  # a call without a message counts too
    committed = store.commit_turn(run_id, TurnRecord(1, "Critic", None, "x"), [call(1), call(1)])
    run = store.run(run_id)
    assert committed.message_id == store.messages(run_id)[0].id
    assert committed.totals == store.totals(run_id)
    assert (committed.totals.turns, committed.totals.prompt_tokens) == (run.turns, 24) == (1, 24)
    assert committed.totals.evaluated_tokens == run.evaluated_tokens == 12


SCENARIO = """
name: budget
goal: Decide whether the orders API needs a cache.
guard: {enabled: false}
personas:
  - {name: Planner, description: plans, system: Plan., options: {num_predict: 16}}
  - {name: Critic, description: doubts, system: Doubt., options: {num_predict: 16}}
memory: {num_ctx: 2048, collapse: null}
termination: {max_turns: 12, token_budget: BUDGET}
"""


def cumulative_evaluated(store: Store, run_id: int) -> list[int]:
    total, out = 0, []
    for c in store.calls(run_id):
        total += c.evaluated_tokens
        out.append(total)
    return out


def orchestrator(tmp_path: Path, store: Store, budget: int) -> Orchestrator:
    loaded = load_scenario_text(SCENARIO.replace("BUDGET", str(budget)), base_dir=tmp_path)
    backend = ScriptedBackend(default="A short reply with a few words.")
    return Orchestrator(loaded, backend, store, settings_for(loaded, backend))


def test_token_budget_counts_every_committed_call_and_survives_resume(tmp_path: Path) -> None:
    """The loop keeps the totals each commit returns instead of re-reading the run row; a resumed
    run starts from the database's totals, so tokens spent before the resume still count."""
    with Store.open(tmp_path / "probe.db") as probe:  # what each turn evaluates, uninterrupted
        plain = orchestrator(tmp_path, probe, 1_000_000)
        probe_id = start_run(probe, plain.loaded, plain.backend, plain.settings)
        list(plain.run(probe_id))
        budget = cumulative_evaluated(probe, probe_id)[7]  # reached at turn 8

    with Store.open(tmp_path / "t.db") as store:
        first = orchestrator(tmp_path, store, budget)
        run_id = start_run(store, first.loaded, first.backend, first.settings)
        events, turns = first.run(run_id), 0
        for event in events:  # stop consuming after two turns: the process "dies" here
            turns += isinstance(event, TurnDone)
            if turns == 2:
                break
        events.close()
        stopped = [e for e in orchestrator(tmp_path, store, budget).run(run_id)
                   if isinstance(e, Stopped)]
        spent = cumulative_evaluated(store, run_id)
        assert [(s.reason, s.turns) for s in stopped] == [("token_budget", len(spent))]
        assert spent[-2] < budget <= spent[-1] == store.run(run_id).evaluated_tokens
        # The new backend re-reads the whole prompt once, so the budget is reached earlier than
        # in the probe; but counted from the resume alone it would not have been reached yet.
        assert len(spent) < 8 and spent[-1] - spent[1] < budget
        # Resumed once more, the budget is spent before any turn: the first check reads it.
        again = [e for e in orchestrator(tmp_path, store, budget).run(run_id)
                 if isinstance(e, (Stopped, TurnDone))]
        assert [(type(e), getattr(e, "reason", "")) for e in again] == [(Stopped, "token_budget")]
