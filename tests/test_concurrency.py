"""Several runs writing to one database file at once, and the CLI reading while they write.

SQLite in WAL mode with a busy timeout, writers taking the lock up front (BEGIN IMMEDIATE) and
one short transaction per turn: no run may fail with "database is locked", and no reader may wait
for a run to finish.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, personae_cmd
from tests.durable_support import scenario_text, write_scenario

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from personae.llm.scripted import ScriptedBackend
    from tests.durable_support import run_to_end, scenario_text

    worker = int(sys.argv[1])
    text = scenario_text("memory: {{collapse: null}}\\ntermination: {{max_turns: {turns}}}\\n", name=f"w{{worker}}")
    for _ in range({runs}):
        store, run_id = run_to_end(Path({db!r}), text, ScriptedBackend(default=f"worker {{worker}} says something"))
        assert store.run(run_id).status == "completed"
    """
)


def check_runs(db: Path, expected_runs: int, turns: int) -> None:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("select id, status, turns from runs order by id").fetchall()
        assert len(rows) == expected_runs
        for run_id, status, count in rows:
            assert (status, count) == ("completed", turns), (run_id, status, count)
            numbers = [r[0] for r in connection.execute(
                "select turn from messages where run_id = ? order by turn", (run_id,)
            )]
            assert numbers == list(range(1, turns + 1))


@pytest.mark.slow
def test_four_writer_processes_share_one_database(tmp_path: Path) -> None:
    """Four processes, each committing three runs of 25 turns as fast as a scripted model
    allows, while this process keeps reading."""
    from personae.store.repo import Store

    db = tmp_path / "shared.db"
    Store.open(db).close()  # created (and migrated) once, as a first `personae run` would
    script = WRITER.format(repo=str(REPO), db=str(db), turns=25, runs=3)
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    reads = 0
    with Store.open(db) as reader:
        while any(w.poll() is None for w in writers):
            for run in reader.runs():
                reader.messages(run.id)
            reader.search("worker")
            reads += 1
    errors = [w.stderr.read() if w.stderr else "" for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors)
    assert reads > 0
    check_runs(db, 12, 25)


@pytest.mark.slow
def test_four_personae_run_commands_on_one_file_with_the_cli_reading(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    """Four `personae run` processes against one Ollama-compatible server (the real model
    behind it), while `personae runs` and `personae show` read the same file."""
    from tests.ollama_server import serve_ollama

    text = scenario_text("memory: {num_ctx: 1024, collapse: null}\ntermination: {max_turns: 3}\n", num_predict=4)
    path = write_scenario(tmp_path / "project", text)
    with serve_ollama() as server:
        env = {**cli_env, "OLLAMA_HOST": server.host}
        command = personae_cmd("run", str(path), "--backend", "ollama", "--model", "smollm2:135m", "-q")
        runs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(4)
        ]
        reads: list[subprocess.CompletedProcess[str]] = []
        deadline = time.monotonic() + 600
        while any(r.poll() is None for r in runs) and time.monotonic() < deadline:
            reads.append(subprocess.run(personae_cmd("runs"), capture_output=True, text=True, env=env, timeout=120))
            reads.append(subprocess.run(personae_cmd("show", "1"), capture_output=True, text=True, env=env, timeout=120))
        outputs = [r.communicate(timeout=600) for r in runs]
        with server._model_lock:  # let a generation in flight finish before the model closes
            pass
    for process, (stdout, stderr) in zip(runs, outputs):
        assert process.returncode == 0, stderr
        assert "locked" not in stderr
    listings = [r for r in reads if r.args[-1] == "runs"]
    shows = [r for r in reads if r.args[-2:] == ["show", "1"]]
    # A read may come before the first run has created the database (read-only commands never
    # create it: exit 2, "no run has been stored there yet"); never anything worse.
    early = "no run has been stored there yet"
    assert listings and all(r.returncode == 0 or early in r.stderr for r in listings), [r.stderr for r in listings]
    assert any(r.returncode == 0 for r in listings)
    # `show 1` may come before run 1 exists (exit 2, "No run 1"); never anything worse.
    assert all(r.returncode == 0 or "No run 1" in r.stderr or early in r.stderr for r in shows), [r.stderr for r in shows]
    assert not any("locked" in r.stderr or "Traceback" in r.stderr for r in reads)
    check_runs(isolated_env, 4, 3)
