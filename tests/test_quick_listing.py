"""`personae runs` reads a SQLite file at this version's schema with sqlite3 (store/quick.py),
from the statements the store itself runs (store/listing.py, compiled into listing_sql.py): it
lists exactly what the SQLAlchemy way lists, leaves no -wal/-shm, and gives every database it
does not read that way (older schema, another URL, a folder) back to the store, whose messages
stay as they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from personae.config import load_scenario_text
from personae.config.names import HUMAN
from personae.errors import UserError
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.run_format import run_dict
from personae.store import listing
from personae.store.quick import run_listing
from personae.store.repo import Store
from tests.durable_support import run_to_end, scenario_text

REPLIES = ["A cache first.", "The p99 is 900 ms.", "Invalidation is the risk."]


@pytest.fixture
def stored(isolated_env: Path) -> Path:
    """Three runs: one finished with variables and option overrides, one finished plainly, and
    one still running (no finished_at, a heartbeat), with User input among the messages."""
    text = scenario_text(
        "vars: {thing: null}\ninputs:\n  - {at_turn: 2, text: 'Mind {thing}.'}\ntermination: {max_turns: 3}\n"
    )
    loaded = load_scenario_text(text, base_dir=isolated_env.parent, variables={"thing": "costs"},
                                options={"temperature": 0.25})
    store = Store.open(isolated_env)
    backend = ScriptedBackend(REPLIES)
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
        pass
    store.close()
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 2}\n"), ScriptedBackend(REPLIES))[0].close()
    plain = load_scenario_text(scenario_text(), base_dir=isolated_env.parent)
    store = Store.open(isolated_env)
    start_run(store, plain, backend, settings_for(plain, backend))  # running: never driven
    store.close()
    return isolated_env


def _by_store(db: Path, limit: int | None) -> list[dict[str, object]]:
    with Store.open_readonly(db) as store:
        rows = store.runs(limit)
        turns = store.persona_turns([r.id for r in rows], human=HUMAN)
        return [run_dict(r, turns[r.id]) | {"pid": r.pid, "heartbeat_at": r.heartbeat_at} for r in rows]


def test_the_quick_listing_is_the_stores(stored: Path) -> None:
    for limit in (None, 1, 2, 5):
        quick = run_listing(stored, limit, human=HUMAN)
        assert quick is not None, "a database at head is read the quick way"
        rows, turns = quick
        got = [run_dict(r, turns[r.id]) | {"pid": r.pid, "heartbeat_at": r.heartbeat_at} for r in rows]
        assert got == _by_store(stored, limit)
    rows, turns = run_listing(stored, None, human=HUMAN) or ([], {})
    assert [r.status for r in rows] == ["running", "completed", "completed"]
    assert rows[2].variables == {"thing": "costs"} and rows[2].options == {"temperature": 0.25}
    assert rows[0].finished_at is None and rows[2].finished_at > rows[2].started_at
    assert turns[rows[2].id] == 3 and rows[2].turns == 4  # three persona turns and one User line


def test_reading_leaves_no_wal_or_shm(stored: Path) -> None:
    assert run_listing(stored, None, human=HUMAN) is not None
    assert sorted(p.name for p in stored.parent.iterdir() if p.name.startswith(stored.name)) == [stored.name]


def test_what_the_quick_way_does_not_read_goes_to_the_store(stored: Path, tmp_path: Path) -> None:
    with sqlite3.connect(stored) as connection:  # an older Personae's file: the store says so
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    connection.close()
    assert run_listing(stored, None, human=HUMAN) is None
    assert run_listing(f"sqlite:///{stored}?mode=ro", None, human=HUMAN) is None  # options: SQLAlchemy's
    assert run_listing(tmp_path, None, human=HUMAN) is None  # a folder: the store names it
    with pytest.raises(UserError, match="No database at .*nothing.db: no run has been stored there yet"):
        run_listing(tmp_path / "nothing.db", None, human=HUMAN)
    assert not (tmp_path / "nothing.db").exists()


def test_the_compiled_statements_are_up_to_date() -> None:
    """listing_sql.py is what store/listing.py and the models compile to, or this fails."""
    assert listing.GENERATED.read_text(encoding="utf-8") == listing.source(), (
        "run: python -m personae.store.listing"
    )
