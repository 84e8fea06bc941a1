"""Deleting runs leaves no orphans, whichever connection deletes (Personae's, or the sqlite3 shell's
with foreign keys off); `personae delete` asks unless --yes; `personae export` writes a whole run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pexpect
import pytest

from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.replay import fork_run
from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests.durable_support import run_to_end, scenario_text, table_counts

CHILD_TABLES = ("messages", "llm_calls", "memory_nodes", "memory_edges", "run_personas")


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        personae_cmd(*args), capture_output=True, text=True, env=env, timeout=60,
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def owned_rows(db: Path, run_id: int) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        counts = {
            t: connection.execute(f"select count(*) from {t} where run_id = ?", (run_id,)).fetchone()[0]
            for t in CHILD_TABLES
        }
        counts["messages_fts"] = connection.execute(  # index entries whose message is gone
            "select count(*) from messages_fts where messages_fts match 'replica' "
            "and rowid not in (select id from messages)"
        ).fetchone()[0]
    return counts


@pytest.fixture
def two_runs(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run 1, and run 2 forked from it at turn 1."""
    monkeypatch.chdir(isolated_env.parent)
    store, parent = run_to_end(
        isolated_env, scenario_text("termination: {max_turns: 3}\n"),
        ScriptedBackend(["Add a read replica.", "Measure p99 first.", "Agreed."]),
    )
    fork = fork_run(store, parent, 1, ScriptedBackend(["Another view."]))
    for _ in fork.orchestrator.run(fork.run_id):
        pass
    store.close()
    return isolated_env


def test_every_personae_connection_enforces_foreign_keys(two_runs: Path) -> None:
    for store in (Store.open(two_runs), Store.open_readonly(two_runs)):
        with store:
            for engine in (store.engines.write, store.engines.read):
                with engine.connect() as connection:
                    assert connection.exec_driver_sql("pragma foreign_keys").scalar() == 1


def test_deleting_in_the_sqlite3_shell_leaves_no_orphans(two_runs: Path) -> None:
    before = owned_rows(two_runs, 1)
    assert all(before[t] > 0 for t in ("messages", "llm_calls", "memory_nodes", "run_personas"))
    with sqlite3.connect(two_runs) as shell:  # as `sqlite3 personae.db`: foreign keys off
        assert shell.execute("pragma foreign_keys").fetchone() == (0,)
        shell.execute("delete from runs where id = 1")
    after = owned_rows(two_runs, 1)
    assert after == {t: 0 for t in after}, after
    with sqlite3.connect(two_runs) as db:
        assert db.execute("select parent_run_id from runs where id = 2").fetchone() == (None,)
        assert db.execute("pragma foreign_key_check").fetchall() == []
        # The fork's own rows (it copied turn 1) are untouched.
        assert db.execute("select count(*) from messages where run_id = 2").fetchone()[0] == 3
        db.execute("insert into messages_fts(messages_fts) values ('integrity-check')")


@pytest.mark.slow
def test_delete_asks_unless_yes(two_runs: Path, cli_env: dict[str, str]) -> None:
    refused = cli("delete", "1", env=cli_env)  # standard input is not a terminal
    assert refused.returncode == 2 and "--yes" in refused.stderr and "Nothing was deleted" in refused.stderr
    unknown = cli("delete", "1", "9", "--yes", env=cli_env)
    assert unknown.returncode == 2 and "No run 9" in unknown.stderr
    assert owned_rows(two_runs, 1)["messages"] == 3

    env = {k: v for k, v in cli_env.items() if k != "COLUMNS"}
    child = pexpect.spawn(personae_cmd()[0], personae_cmd("delete", "1")[1:], env=env,
                          encoding="utf-8", timeout=60, dimensions=(30, 100))
    child.expect(r"Delete run 1 \(durable, 3 turns\) from .*\?")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and owned_rows(two_runs, 1)["messages"] == 3

    child = pexpect.spawn(personae_cmd()[0], personae_cmd("delete", "1")[1:], env=env,
                          encoding="utf-8", timeout=60, dimensions=(30, 100))
    child.expect(r"\?")
    child.sendline("y")
    child.expect("Deleted 1 run: 1 \\(durable, 3 turns\\)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert owned_rows(two_runs, 1) == {t: 0 for t in (*CHILD_TABLES, "messages_fts")}
    listed = cli("runs", env=cli_env).stdout.splitlines()
    assert [line.split("\t")[0] for line in listed[1:]] == ["2"]

    gone = cli("delete", "2", "--yes", env=cli_env)
    assert gone.returncode == 0 and "Deleted 1 run: 2" in gone.stdout
    assert table_counts(two_runs)["messages"] == 0


@pytest.mark.slow
def test_export_json_has_the_whole_run_and_md_the_transcript(two_runs: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = cli("export", "1", env=cli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"run", "personas", "messages", "calls", "memory"}
    assert data["run"]["id"] == 1 and data["run"]["scenario_yaml"].startswith("name: durable")
    assert [m["content"] for m in data["messages"]] == ["Add a read replica.", "Measure p99 first.", "Agreed."]
    assert len(data["calls"]) == 3 and "json_schema" in data["calls"][0] and data["calls"][0]["prompt"]
    assert {n["kind"] for n in data["memory"]["nodes"]} >= {"message", "persona"}
    assert data["memory"]["edges"]
    target = tmp_path / "run1.md"
    written = cli("export", "1", "--format", "md", "-o", str(target), env=cli_env)
    assert written.returncode == 0 and target.read_text(encoding="utf-8").startswith("# Run 1: durable")
    assert "Measure p99 first." in target.read_text(encoding="utf-8")
    bad = cli("export", "1", "-o", str(tmp_path / "no" / "such" / "x.json"), env=cli_env)
    assert bad.returncode == 2 and "Cannot write" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_delete_creates_no_database_and_converts_no_foreign_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    missing = tmp_path / "none.db"
    result = cli("delete", "1", "--yes", "--db", str(missing), env=cli_env)
    assert result.returncode == 2 and "No database at" in result.stderr and not missing.exists()
    foreign = tmp_path / "photos.db"
    with sqlite3.connect(foreign) as db:
        db.execute("create table runs (id integer primary key)")
        db.execute("insert into runs values (1)")
    before = foreign.read_bytes()
    result = cli("delete", "1", "--yes", "--db", str(foreign), env=cli_env)
    assert result.returncode == 2 and "is not a Personae database" in result.stderr
    assert foreign.read_bytes() == before and not list(tmp_path.glob("*.bak"))
