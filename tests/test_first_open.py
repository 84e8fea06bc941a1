"""Opening a database that is not what it seems, or that others are creating right now
(issue 21, items 7 and 10): the decision to migrate is taken under the write lock, and another
program's file is never migrated nor backed up beside."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from personae.errors import StoreError
from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario


@pytest.mark.slow
def test_eight_first_runs_on_a_database_that_does_not_exist_all_succeed(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server  # type: ignore[no-untyped-def]
) -> None:
    path = write_scenario(tmp_path / "project", scenario_text(
        "memory: {num_ctx: 1024, collapse: null}\ntermination: {max_turns: 1}\n"))
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    for attempt in range(2):
        db = tmp_path / f"new-{attempt}.db"
        command = personae_cmd("run", str(path), "--backend", "ollama", "--model", "smollm2:135m", "-q", "--db", str(db))
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for _ in range(8)]
        outputs = [r.communicate(timeout=600) for r in runs]
        for process, (_stdout, stderr) in zip(runs, outputs):
            assert process.returncode == 0, stderr
        with sqlite3.connect(db) as connection:
            statuses = [r[0] for r in connection.execute("select status from runs")]
        assert statuses == ["completed"] * 8
        assert list(tmp_path.glob(f"new-{attempt}.db.*.bak")) == []  # a new file is not "upgraded"


def _alembic_app(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("create table alembic_version (version_num varchar(32) primary key)")
        connection.execute("insert into alembic_version values ('4f2a9c1d0e7b')")
        connection.execute("create table invoices (id integer primary key, total real)")
        connection.execute("insert into invoices values (1, 9.5)")


def test_another_programs_alembic_database_is_not_taken_for_ours(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _alembic_app(path)
    with pytest.raises(StoreError, match="belongs to another program.*4f2a9c1d0e7b"):
        Store.open(path)
    with sqlite3.connect(path) as connection:
        tables = {r[0] for r in connection.execute("select name from sqlite_master where type = 'table'")}
        rows = connection.execute("select * from invoices").fetchall()
    assert (tables, rows) == ({"alembic_version", "invoices"}, [(1, 9.5)])
    assert list(tmp_path.glob("*.bak")) == []


def test_a_file_with_other_tables_and_no_version_is_not_migrated_into(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table notes (id integer primary key, body text)")
    with pytest.raises(StoreError, match="belongs to another program.*notes"):
        Store.open(path)
    with sqlite3.connect(path) as connection:
        tables = {r[0] for r in connection.execute("select name from sqlite_master where type = 'table'")}
    assert tables == {"notes"} and list(tmp_path.glob("*.bak")) == []


@pytest.mark.slow
def test_db_upgrade_refuses_another_programs_alembic_database(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "app.db"
    _alembic_app(path)
    done = subprocess.run(personae_cmd("db", "upgrade", "--db", str(path)),
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert done.returncode != 0 and "another program" in done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.glob("*.bak")) == []
