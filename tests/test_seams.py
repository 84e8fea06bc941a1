"""Typed seams (issue 21, item 2): a write conflict is its own error class, not a StoreError with
a patched attribute; and a turn becomes an ``Utterance`` one way, so what the loop yields is what
``load_history`` reads back (which is what makes a resumed run see the same transcript)."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae.errors import StoreConflict
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import load_history
from personae.orchestrator.state import InputGiven, TurnDone
from personae.store.repo import Store, TurnRecord
from tests.durable_support import run_events, scenario_text
from tests.test_memory_graph import new_run


def test_a_write_conflict_is_a_store_conflict(tmp_path: Path) -> None:
    with Store.open(tmp_path / "t.db") as store:
        run_id = new_run(store)
        store.commit_turn(run_id, TurnRecord(1, "Critic", None, "First."), [])
        with pytest.raises(StoreConflict, match="Another process wrote to the same run"):
            store.commit_turn(run_id, TurnRecord(1, "Critic", None, "Again."), [])


def test_what_the_loop_yields_is_what_the_database_gives_back(tmp_path: Path) -> None:
    text = scenario_text(
        "memory: {collapse: null}\ntermination: {max_turns: 3}\n"
        "inputs:\n  - {at_turn: 2, text: Budget is 2k a month.}\n"
    )
    replies = iter(["Cache reads.", '{"verdict": "x"}', "Measure first.", "Then decide."])
    backend = ScriptedBackend(default=lambda _request: next(replies))
    store, run_id, events = run_events(tmp_path / "t.db", text, backend)
    yielded = [e.utterance for e in events if isinstance(e, (TurnDone, InputGiven))]
    assert any(isinstance(e, InputGiven) for e in events)
    assert yielded == load_history(store, run_id)
    assert all(u.id is not None for u in yielded)
    store.close()
