"""Databases that cannot be opened or written: one paragraph naming the database and the fix,
exit 1 (2 when the path itself is wrong), never a traceback; a run whose disk fills up ends
``failed`` with the command that continues it, and continues once there is room again.

The read-only and disk-full cases mount a small tmpfs, so they need root (skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario
from tests.ollama_server import DEFAULT_MODEL_NAME, OllamaTestServer
from tests.test_resume_http import InstantModel, reply_for


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(personae_cmd(*args), capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def personae_db(path: Path, env: dict[str, str]) -> Path:
    """A real Personae database, made as a writing command makes it."""
    from personae.store.repo import Store

    Store.open(path).close()
    return path


def _random(tmp: Path, env: dict[str, str]) -> Path:
    (tmp / "random.db").write_bytes(os.urandom(8192))
    return tmp / "random.db"


def _text(tmp: Path, env: dict[str, str]) -> Path:
    (tmp / "notes.db").write_text("these are my notes, not a database\n" * 50)
    return tmp / "notes.db"


def _truncated(tmp: Path, env: dict[str, str]) -> Path:
    whole = personae_db(tmp / "whole.db", env).read_bytes()
    (tmp / "cut.db").write_bytes(whole[: len(whole) // 3])
    return tmp / "cut.db"


def _folder(tmp: Path, env: dict[str, str]) -> Path:
    (tmp / "a-folder").mkdir()
    return tmp / "a-folder"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "code", "says"),
    [
        (_random, 1, "is not a SQLite database"),
        (_text, 1, "is not a SQLite database"),
        (_truncated, 1, "damaged or truncated"),
        (_folder, 2, "is a folder, not a file"),
        (lambda tmp, env: tmp / "missing" / "x.db", 2, "No database at"),
    ],
    ids=["random-bytes", "text-file", "truncated", "folder", "missing-folder"],
)
def test_a_bad_database_path_is_one_paragraph(
    tmp_path: Path, cli_env: dict[str, str], make, code: int, says: str  # type: ignore[no-untyped-def]
) -> None:
    db = make(tmp_path, cli_env)
    for command in (["runs"], ["show", "1"], ["search", "cache"]):
        done = cli(cli_env, *command, "--db", str(db))
        assert done.returncode == code, done.stderr
        assert says in done.stderr and str(db) in done.stderr and "--db" in done.stderr


@pytest.mark.slow
def test_urls_nobody_can_open(cli_env: dict[str, str]) -> None:
    bad = cli(cli_env, "runs", "--db", "foo://bar")
    assert bad.returncode == 2 and "foo://bar" in bad.stderr and "sqlite:///" in bad.stderr
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        driver = cli(cli_env, "runs", "--db", "postgresql://me:secret@127.0.0.1:9/runs")
        assert driver.returncode == 1 and "pip install" in driver.stderr
        assert "secret" not in driver.stderr  # the password is not printed


def run_somewhere(tmp: Path, env: dict[str, str], db: Path) -> subprocess.CompletedProcess[str]:
    """A writing command on ``db``. It fails at the database, before any model call; the server
    answers all the same, since the model is checked before the database is opened."""
    path = write_scenario(tmp / "project", scenario_text("termination: {max_turns: 1}\n"))
    model_file = tmp / "instant.gguf"
    model_file.write_bytes(b"GGUF")
    with OllamaTestServer(InstantModel(model_file)) as server:
        return cli(
            env | {"OLLAMA_HOST": server.host}, "run", str(path), "--backend", "ollama",
            "--model", DEFAULT_MODEL_NAME, "-q", "--db", str(db),
        )


@pytest.mark.slow
def test_a_foreign_sqlite_file_with_its_own_runs_table_is_left_alone(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as connection:
        connection.execute("create table runs (id integer primary key, distance_km real)")
        connection.execute("insert into runs values (1, 5.2)")
    read = cli(cli_env, "runs", "--db", str(db))
    assert read.returncode == 2 and "not a Personae database" in read.stderr and str(db) in read.stderr
    write = run_somewhere(tmp_path, cli_env, db)
    assert write.returncode == 1 and "another program" in write.stderr and str(db) in write.stderr
    with sqlite3.connect(db) as connection:
        tables = [r[0] for r in connection.execute("select name from sqlite_master where type='table'")]
        assert tables == ["runs"] and connection.execute("select * from runs").fetchall() == [(1, 5.2)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_read_only_file_system_and_a_read_only_folder(
    small_disk: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    existing = personae_db(small_disk / "p.db", cli_env)
    connection = sqlite3.connect(existing)  # as a clean close leaves it: no -wal, no -shm
    connection.execute("pragma journal_mode=delete")
    connection.close()
    assert sorted(p.name for p in small_disk.iterdir()) == ["p.db"]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    read = cli(cli_env, "runs", "--db", str(existing))  # read-only commands open it mode=ro
    assert read.returncode == 0 or ("mounted read-only" in read.stderr and read.returncode == 1), read.stderr
    for db in (existing, small_disk / "new.db"):
        done = run_somewhere(tmp_path, cli_env, db)
        assert done.returncode == 1, done.stderr
        assert "mounted read-only" in done.stderr and str(db) in done.stderr and "-shm" in done.stderr


BIG = "word " * 3200  # 16 KB a reply: a 1 MB disk fills within a few dozen turns


class Verbose(InstantModel):
    def __init__(self, model_file: Path) -> None:
        super().__init__(model_file)
        self.default = lambda request: BIG + reply_for(request)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_resumably(
    small_disk: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    db = small_disk / "p.db"
    path = write_scenario(
        tmp_path / "project",
        scenario_text("memory: {collapse: null}\ntermination: {max_turns: 60}\n", num_predict=600),
    )
    model_file = tmp_path / "instant.gguf"
    model_file.write_bytes(b"GGUF")
    with OllamaTestServer(Verbose(model_file)) as server:
        env = cli_env | {"OLLAMA_HOST": server.host, "PERSONAE_DB": str(db)}
        full = cli(env, "run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q")
        assert full.returncode == 1, full.stderr
        assert "is full" in full.stderr and str(db) in full.stderr
        assert "personae resume 1" in full.stderr
        with sqlite3.connect(db) as connection:
            status, turns = connection.execute("select status, turns from runs where id = 1").fetchone()
            assert connection.execute("pragma integrity_check").fetchone() == ("ok",)
        assert status == "failed" and 0 < turns < 60, full.stderr

        subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
        done = cli(env, "resume", "1", "-q")
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(db) as connection:
            assert connection.execute("select status, turns from runs").fetchall() == [("completed", 60)]
            numbers = [r[0] for r in connection.execute("select turn from messages order by turn")]
        assert numbers == list(range(1, 61))
