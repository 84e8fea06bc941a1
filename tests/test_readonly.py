"""Commands that only read never create, upgrade or touch a database: on a missing file they say
where they looked and how to point elsewhere; a foreign SQLite file or an older Personae database
is named and left byte for byte as it was (no tables added, no .bak)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import personae_cmd
from tests.test_migrations import FIRST, build_first_revision

READ_ONLY = [["runs"], ["show", "1"], ["search", "redis"], ["graph", "1"], ["replay", "1"], ["export", "1"]]


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        personae_cmd(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes. A reader of a WAL database gets SQLite's shared-memory index (-shm) and
    an empty -wal, as with the sqlite3 shell; they hold no data, so only an empty -wal passes."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    for name in [n for n in files if n.endswith("-shm")]:
        del files[name]
    for name in [n for n in files if n.endswith("-wal")]:
        assert files.pop(name) == b"", f"{name} holds writes"
    return files


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY + [["doctor"]], ids=lambda c: c[0])
def test_a_missing_database_is_named_and_not_created(
    command: list[str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "PERSONAE_DB"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = cli(*command, env=env, cwd=work)
    assert "Traceback" not in result.stdout + result.stderr
    assert list(work.iterdir()) == []  # no personae.db, no -wal, nothing
    if command == ["doctor"]:
        assert f"{work / 'personae.db'} does not exist yet" in result.stdout
        return
    assert result.returncode == 2, result
    message = " ".join(result.stderr.split())
    assert f"No database at {work / 'personae.db'}" in message
    assert "--db" in message and "PERSONAE_DB" in message


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY + [["doctor"]], ids=lambda c: c[0])
def test_a_foreign_sqlite_file_is_refused_untouched(
    command: list[str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "photos.db"
    with sqlite3.connect(path) as db:
        db.execute("create table photos (id integer primary key, name text)")
        db.execute("insert into photos (name) values ('cat.jpg')")
    before = snapshot(folder)
    result = cli(*command, "--db", str(path), env=cli_env, cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(folder) == before  # no alembic tables added, no .bak, no -wal left
    said = " ".join((result.stdout + result.stderr).split())
    assert f"{path} is not a Personae database" in said
    assert result.returncode == (1 if command == ["doctor"] else 2), result


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_an_older_database_is_not_upgraded_by_reading(
    command: list[str], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "old.db"
    build_first_revision(path)
    for leftover in folder.glob("old.db-*"):
        leftover.unlink()
    before = snapshot(folder)
    result = cli(*command, "--db", str(path), env=cli_env, cwd=tmp_path)
    assert result.returncode == 1, result  # as for a newer schema: the file is fine, the version not
    said = " ".join(result.stderr.split())
    assert f"older schema (revision {FIRST}" in said and "personae db upgrade" in said
    assert snapshot(folder) == before


@pytest.mark.slow
def test_db_upgrade_then_reading_works(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "old.db"
    build_first_revision(path)
    upgraded = cli("db", "upgrade", "--db", str(path), env=cli_env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded
    assert f"Upgraded the database schema from {FIRST}" in upgraded.stdout
    assert len(list(tmp_path.glob("old.db.*.bak"))) == 1
    listed = cli("runs", "--db", str(path), "--format", "tsv", env=cli_env, cwd=tmp_path)
    assert listed.returncode == 0, listed
    assert "cache-review" in listed.stdout
    again = cli("db", "upgrade", "--db", str(path), env=cli_env, cwd=tmp_path)
    assert "already at this version's schema" in again.stdout
    assert len(list(tmp_path.glob("old.db.*.bak"))) == 1


def test_db_path_names_the_file_without_creating_it(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = cli("db", "path", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == cli_env["PERSONAE_DB"] + "\n"
    assert not Path(cli_env["PERSONAE_DB"]).exists()
    other = cli("db", "path", "--db", "sub/x.db", env=cli_env, cwd=tmp_path)
    assert other.stdout == str(tmp_path / "sub" / "x.db") + "\n"


def test_an_empty_file_is_no_database_yet(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """What a reader sees while the first `personae run` is creating the file."""
    path = tmp_path / "new.db"
    path.touch()
    result = cli("runs", "--db", str(path), env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and "no run has been stored there yet" in result.stderr
    assert path.read_bytes() == b""
