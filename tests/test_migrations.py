"""Migrations for real (after simonw/llm's tests/test_migrate.py): a database built at the first
revision and filled with rows is opened by the current code, which upgrades it to the head — with
a backup first and a notice — keeping every row, and ends with exactly the columns the SQLAlchemy
models declare. A database from a newer Personae is refused, without a traceback.

Nothing here names the head revision: the test holds for whatever revisions come after 0001.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from personae.errors import StoreError
from personae.llm.base import ChatMessage
from personae.store.db import (
    current_revision,
    database_url,
    head_revision,
    open_engines,
    upgrade,
)
from personae.store.models import Base
from personae.store.repo import CallRecord, NewRun, Store, TurnRecord
from tests.conftest import personae_cmd

FIRST = "0001"
FIRST_TABLES = ("runs", "run_personas", "messages", "llm_calls")


def build_first_revision(path: Path) -> None:
    """A database exactly as Personae's first schema made it, with a little of everything."""
    engines = open_engines(database_url(path), migrate=False)
    try:
        assert upgrade(engines, to=FIRST) is None  # a new file: no notice, no backup
        assert current_revision(engines.read) == FIRST
    finally:
        engines.dispose()
    with sqlite3.connect(path) as db:
        for run_id, parent, fork in ((1, None, None), (2, 1, 2)):
            db.execute(
                "insert into runs (id, scenario_name, scenario_path, scenario_yaml, status, "
                "stop_reason, error, backend, model, layout, num_ctx, max_turns, seed, started_at, "
                "finished_at, heartbeat_at, pid, turns, prompt_tokens, evaluated_tokens, "
                "completion_tokens, personae_version, parent_run_id, fork_turn) values "
                "(?, 'cache-review', '/s/cache.yaml', 'name: cache-review', 'completed', "
                "'max_turns', null, 'embedded', 'SmolLM2', 'cache_friendly', 2048, 3, 7, "
                "'2026-01-02 03:04:05.000000', '2026-01-02 03:05:05.000000', "
                "'2026-01-02 03:05:00.000000', null, 3, 300, 120, 30, '0.1.0', ?, ?)",
                (run_id, parent, fork),
            )
            for position, name in enumerate(("Planner", "Critic")):
                db.execute(
                    "insert into run_personas (run_id, name, position, source, definition) "
                    "values (?, ?, ?, 'builtin', ?)",
                    (run_id, name, position, json.dumps({"name": name, "system": f"Be {name}."})),
                )
            for turn in (1, 2, 3):
                db.execute(
                    "insert into messages (run_id, turn, persona, phase, content, thinking, raw, "
                    "cut, structured, meta, created_at) values (?, ?, ?, 'debate', ?, ?, ?, null, "
                    "?, ?, '2026-01-02 03:04:06.000000')",
                    (
                        run_id, turn, ("Planner", "Critic", "Planner")[turn - 1],
                        f"Eviction policy point {turn} of run {run_id}.", "hm" if turn == 2 else None,
                        f"raw {turn}", json.dumps({"verdict": "yes"}) if turn == 3 else None,
                        json.dumps({"mode": "debate"}) if turn == 1 else None,
                    ),
                )
                message_id = db.execute("select last_insert_rowid()").fetchone()[0]
                db.execute(
                    "insert into llm_calls (run_id, message_id, turn, purpose, persona, backend, "
                    "model, options, prompt, prompt_hash, json_schema, manifest, response, "
                    "done_reason, prompt_tokens, evaluated_tokens, completion_tokens, total_ns, "
                    "load_ns, prompt_eval_ns, eval_ns, wall_ns, error, created_at) values "
                    "(?, ?, ?, 'turn', 'Planner', 'embedded', 'SmolLM2', '{\"num_ctx\": 2048}', "
                    "'[{\"role\": \"user\", \"content\": \"hi\"}]', ?, null, '[]', ?, 'stop', "
                    "100, 40, 10, 5, 0, 2, 3, 6, null, '2026-01-02 03:04:06.000000')",
                    (run_id, message_id, turn, f"{run_id:02d}{turn:062d}", f"raw {turn}"),
                )
        db.execute(  # a failed call, linked to no message
            "insert into llm_calls (run_id, turn, purpose, backend, model, options, prompt, "
            "prompt_hash, manifest, error, created_at) values (1, 4, 'turn', 'embedded', 'SmolLM2', "
            "'{}', '[]', 'x', '[]', 'server went away', '2026-01-02 03:04:07.000000')"
        )


def rows(path: Path, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        names = columns or [r[1] for r in db.execute(f'pragma table_info("{table}")')]
        quoted = ", ".join(f'"{n}"' for n in names)
        return db.execute(f'select {quoted} from "{table}" order by id').fetchall()


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[1] for r in db.execute(f'pragma table_info("{table}")')]


def schema_differences(store: Store) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models (FTS5
    tables are managed by raw SQL in the migrations and have no model)."""
    with store.engines.read.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, Base.metadata)
    return [d for d in found if not (d[0] == "remove_table" and "_fts" in d[1].name)]


def assert_matches_models(store: Store) -> None:
    inspector = inspect(store.engines.read)
    for table in Base.metadata.sorted_tables:
        found = {c["name"]: c for c in inspector.get_columns(table.name)}
        declared = {c.name: c for c in table.columns}
        assert sorted(found) == sorted(declared), table.name
        for name, column in declared.items():
            assert bool(found[name]["nullable"]) == bool(column.nullable), (table.name, name)
            assert found[name]["type"]._type_affinity is column.type._type_affinity, (table.name, name)
    assert schema_differences(store) == []


def test_a_new_database_matches_the_models(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.db") as store:
        assert store.notice is None
        assert current_revision(store.engines.read) == head_revision()
        assert_matches_models(store)


def test_upgrade_from_the_first_revision_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build_first_revision(path)
    old_columns = {t: columns(path, t) for t in FIRST_TABLES}
    old_rows = {t: rows(path, t) for t in FIRST_TABLES}

    store = Store.open(path)
    head = head_revision()
    assert current_revision(store.engines.read) == head != FIRST
    # The user is told, and where the copy is.
    assert store.notice is not None
    assert f"from {FIRST} to {head}" in store.notice
    backup = Path(re.search(r"a copy of the old file is at (.+?)\.$", store.notice).group(1))  # type: ignore[union-attr]
    assert backup.is_file() and backup.parent == path.parent
    with sqlite3.connect(backup) as db:
        assert db.execute("select version_num from alembic_version").fetchone() == (FIRST,)
    assert {t: rows(backup, t) for t in FIRST_TABLES} == old_rows

    assert_matches_models(store)
    for table in FIRST_TABLES:  # every old row, every old value
        assert rows(path, table, old_columns[table]) == old_rows[table], table

    # The upgraded file works: search finds old turns, and new runs can be written beside them.
    assert {(h.run_id, h.turn) for h in store.search("eviction policy")} == {
        (r, t) for r in (1, 2) for t in (1, 2, 3)
    }
    assert store.run(2).parent_run_id == 1 and store.messages(1)[2].structured == {"verdict": "yes"}
    new_id = store.create_run(
        NewRun("s", None, "name: s", "scripted", "m", "cache_friendly", 1024, 2, None, [("A", 0, "inline", {})])
    )
    call = CallRecord("turn", "A", "scripted", "m", {}, (ChatMessage("user", "hi"),), [], "hello", turn=1)
    store.commit_turn(new_id, TurnRecord(1, "A", None, "hello"), [call])
    assert [m.content for m in store.messages(new_id)] == ["hello"]
    store.close()

    # Opened again: already at the head, nothing to say, no second backup.
    with Store.open(path) as again:
        assert again.notice is None
    assert len(list(tmp_path.glob("old.db.*.bak"))) == 1


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def _stamp(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("update alembic_version set version_num = ?", (revision,))


@pytest.mark.slow
def test_a_database_from_a_newer_personae_is_refused(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "future.db"
    Store.open(path).close()
    _stamp(path, "0999_from_the_future")
    before = dump(path)
    with pytest.raises(StoreError, match="written by a newer Personae") as info:
        Store.open(path)
    assert "0999_from_the_future" in str(info.value) and "pip install -U personae" in str(info.value)
    for command in (["runs"], ["show", "1"], ["search", "x"]):
        result = subprocess.run(
            personae_cmd(*command, "--db", str(path)), capture_output=True, text=True, env=cli_env, timeout=60
        )
        assert result.returncode in (1, 2), result
        assert "written by a newer Personae" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
    assert dump(path) == before and not list(tmp_path.glob("*.bak"))  # untouched


def test_an_upgraded_database_cascades_deletes_in_any_connection(tmp_path: Path) -> None:
    """0003: deleting a run in a connection with foreign keys off (the sqlite3 shell's default)
    removes what belongs to it, in a database upgraded from the first revision too."""
    path = tmp_path / "old.db"
    build_first_revision(path)
    with sqlite3.connect(path) as shell:
        shell.execute("delete from runs where id = 1")  # before 0003: orphans stay behind
        assert shell.execute("select count(*) from messages where run_id = 1").fetchone() == (3,)
    build_first_revision(tmp_path / "again.db")
    Store.open(tmp_path / "again.db").close()
    with sqlite3.connect(tmp_path / "again.db") as shell:
        assert shell.execute("pragma foreign_keys").fetchone() == (0,)
        shell.execute("delete from runs where id = 1")
        for table in ("messages", "llm_calls", "run_personas", "memory_nodes", "memory_edges"):
            assert shell.execute(f"select count(*) from {table} where run_id = 1").fetchone() == (0,), table
        assert shell.execute("select parent_run_id from runs where id = 2").fetchone() == (None,)
        assert shell.execute("pragma foreign_key_check").fetchall() == []
        assert {(h,) for h in ("Eviction policy point 1 of run 2.",)} <= set(
            shell.execute("select content from messages where run_id = 2").fetchall()
        )
