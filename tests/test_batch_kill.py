"""``personae batch`` as a real process: killed with SIGKILL mid-batch, then ``batch resume``d.
Every variant ends with exactly one run, every run completed, no turn written twice. The model is
an Ollama-compatible server answering after a short wait (``tests/ollama_server.py``), so the kill
lands while runs are in flight; then ``batch report`` and a bad sweep file, through the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.builders import make_scenario
from tests.conftest import personae_cmd

SWEEP = """\
name: kill-me
scenarios: [a.yaml, b.yaml]
vary: {seed: [1, 2, 3]}
max_turns: 3
endpoints: [{backend: ollama, model: "smollm2:135m", concurrency: 2}]
"""


def count(db: Path, sql: str) -> Any:
    if not db.exists():
        return None
    with sqlite3.connect(db, timeout=30) as connection:
        try:
            return connection.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return None


@pytest.mark.slow
def test_a_killed_batch_resumes_and_runs_every_variant_once(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            make_scenario(name=name, extra="memory: {num_ctx: 2048}\n"), encoding="utf-8"
        )
    (tmp_path / "sweep.yaml").write_text(SWEEP, encoding="utf-8")

    def slowly(_request: object) -> str:
        time.sleep(0.15)  # a server's wait: the kill comes while turns are in flight
        return "A point about the cache."

    scripted_ollama_server.backend.default = slowly
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    db = tmp_path / "b.db"
    batch = subprocess.Popen(
        personae_cmd("batch", str(tmp_path / "sweep.yaml"), "--db", str(db)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 90
    while (count(db, "select count(*) from runs where status = 'completed'") or 0) < 1:
        assert batch.poll() is None and time.monotonic() < deadline, batch.communicate()
        time.sleep(0.05)
    os.kill(batch.pid, signal.SIGKILL)
    batch.wait()
    finished = count(db, "select count(*) from runs where status = 'completed'")
    assert finished < 6 and count(db, "select count(*) from runs where status = 'running'") >= 1

    listed = subprocess.run(
        personae_cmd("batches", "--db", str(db), "--format", "csv"),
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert listed.stdout.splitlines()[1].startswith(f"1,kill-me,stale (resumable),6,{finished},0,")

    resumed = subprocess.run(
        personae_cmd("batch", "resume", "1", "--db", str(db)),
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"resuming batch 1 · {finished} runs done" in resumed.stdout
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select v.key, count(r.id), min(r.status), min(r.turns), max(r.turns) from batch_variants v "
            "left join runs r on r.id = v.run_id group by v.id"
        ).fetchall()
        assert len(rows) == 6
        assert all(n == 1 and status == "completed" and low == high == 3 for _, n, status, low, high in rows), rows
        assert connection.execute("select count(*) from runs").fetchone() == (6,)
        assert connection.execute(
            "select count(*) from (select run_id, turn from messages group by 1, 2 having count(*) > 1)"
        ).fetchone() == (0,)
        assert connection.execute("select status, pid from batches").fetchone() == ("completed", None)

    report = subprocess.run(
        personae_cmd("batch", "report", "1", "--db", str(db), "--format", "json"),
        env=env, capture_output=True, text=True, timeout=60,
    )
    data = json.loads(report.stdout)
    assert [g["group"] for g in data["groups"]] == ["a.yaml", "b.yaml"]
    assert all(g["runs"] == g["completed"] == 3 and g["turns_mean"] == 3 for g in data["groups"])
    table = subprocess.run(
        personae_cmd("batch", "report", "1", "--db", str(db), "--format", "table"),
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert table.returncode == 0 and "batch 1 · kill-me · completed" in table.stdout
    assert "max_turns ×3" in table.stdout and "b|seed=3" in table.stdout
    again = subprocess.run(
        personae_cmd("batch", "resume", "1", "--db", str(db)),
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 2 and "already completed" in again.stderr


@pytest.mark.slow
def test_a_bad_sweep_file_exits_2_with_one_paragraph(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "sweep.yaml").write_text(SWEEP.replace("seed:", "sead:"), encoding="utf-8")
    result = subprocess.run(
        personae_cmd("batch", str(tmp_path / "sweep.yaml"), "--db", str(tmp_path / "b.db")),
        env=cli_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "sweep.yaml, line 3" in result.stderr and "sead" in result.stderr
    assert not (tmp_path / "b.db").exists()
