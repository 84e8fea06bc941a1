"""Resume: a run continues from its last committed turn, rebuilt from the database alone."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from personae.errors import UserError
from personae.liveness import process_alive
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.resume import check_resumable, reload_scenario, run_settings
from personae.orchestrator.run import Orchestrator
from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests.durable_support import (
    run_to_end,
    scenario_text,
    start,
    transcript,
    write_scenario,
)

PHASES = """\
policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planner]}
    - {name: debate, speakers: [Analyst, Critic], rounds: 3}
    - {name: conclude, speakers: [Planner]}
memory: {collapse: null}
termination: {max_turns: 30, stop_phrase: "FINAL DECISION:"}
"""


def echo(request: ChatRequest) -> str:
    """A reply that depends on the whole prompt: any difference in what a resumed run rebuilds
    would change every later reply, and the comparison below would see it. Collapse calls (with
    a JSON schema) get a valid answer citing the first turn they may cite."""
    size = len(request.messages[-1].content)
    if request.schema is None:
        return f"Noted {size} characters."
    props = request.schema["properties"]
    if "facts" not in props:
        return json.dumps({"summary": f"Merged {size}."})
    turns = props["facts"]["items"]["properties"]["turns"]["items"]["enum"]
    fact = {"text": f"Fact of size {size}.", "turns": [turns[0]]}
    return json.dumps({"summary": f"Summary {size}.", "facts": [fact], "decisions": [], "open_questions": []})


def interrupt_at(turn: int) -> ScriptedBackend:
    def boom(_request: ChatRequest) -> str:
        raise KeyboardInterrupt

    return ScriptedBackend([echo] * (turn - 1) + [boom], default=echo)


def resume(store: Store, run_id: int, backend: ScriptedBackend) -> list:
    row = store.run(run_id)
    check_resumable(row)
    loaded = reload_scenario(store, row)
    settings = run_settings(row, loaded, backend)
    assert store.claim_run(run_id, expected_status=row.status, expected_pid=row.pid)
    return list(Orchestrator(loaded, backend, store, settings).run(run_id))


COLLAPSING = PHASES.replace(
    "memory: {collapse: null}",
    "memory: {num_ctx: 1024, collapse: {every_turns: 3, keep_recent: 2, summarizer: Critic}}",
)


@pytest.mark.parametrize(
    ("stop_at", "extra"),
    [(1, PHASES), (2, PHASES), (5, PHASES), (8, PHASES), (4, COLLAPSING), (7, COLLAPSING), (8, COLLAPSING)],
)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path, stop_at: int, extra: str) -> None:
    """Policy position, phase, stop-rule counters and collapse state all come back from the
    database: the resumed run asks the model exactly what an uninterrupted one would have."""
    path = write_scenario(tmp_path / "project", scenario_text(extra))
    whole_store, whole = run_to_end(tmp_path / "whole.db", path, ScriptedBackend(default=echo))

    db = tmp_path / "cut.db"
    store, run_id, orchestrator = start(db, path, interrupt_at(stop_at))
    with pytest.raises(KeyboardInterrupt):
        for _ in orchestrator.run(run_id):
            pass
    row = store.run(run_id)
    # The interrupt hits the stop_at-th model call: a turn, or a collapse (mid-collapse).
    assert row.status == "interrupted" and row.turns <= stop_at - 1
    before = transcript(db, run_id)

    resume(store, run_id, ScriptedBackend(default=echo))
    after = transcript(db, run_id)
    assert after[: len(before)] == before
    assert after == transcript(tmp_path / "whole.db", whole)
    assert [c.prompt_hash for c in store.calls(run_id)] == [c.prompt_hash for c in whole_store.calls(whole)]
    assert store.run(run_id).status == "completed"


def test_stop_phrase_counts_survive_a_resume(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    backend = ScriptedBackend(["a", "FINAL DECISION: yes"], default="more")
    store, run_id = run_to_end(db, scenario_text(PHASES), backend)
    assert store.run(run_id).stop_reason == "stop_phrase"
    with pytest.raises(UserError, match="already completed"):
        check_resumable(store.run(run_id))


def test_failed_run_resumes_once_the_cause_is_fixed(tmp_path: Path) -> None:
    from personae.errors import BackendError

    def gone(_request: ChatRequest) -> str:
        raise BackendError("model not pulled", status=404)

    db = tmp_path / "p.db"
    store, run_id, orchestrator = start(db, scenario_text(PHASES), ScriptedBackend(["a", "b", gone]))
    with pytest.raises(BackendError):
        for _ in orchestrator.run(run_id):
            pass
    assert (store.run(run_id).status, store.run(run_id).turns) == ("failed", 2)
    assert check_resumable(store.run(run_id)) is None
    resume(store, run_id, ScriptedBackend(default="fine"))
    assert [t[0] for t in transcript(db, run_id)] == list(range(1, 9))
    assert store.run(run_id).status == "completed" and store.run(run_id).error is None


def test_resume_uses_the_personas_frozen_at_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    personas = folder / "personas"
    personas.mkdir(parents=True)
    (personas / "sage.yaml").write_text("name: Sage\ndescription: wise\nsystem: Speak slowly.\n")
    path = write_scenario(folder, "name: s\ngoal: g\nguard: {enabled: false}\npersonas: [Sage, Critic]\nmemory: {collapse: null}\n")
    store, run_id, orchestrator = start(tmp_path / "p.db", path, interrupt_at(2))
    with pytest.raises(KeyboardInterrupt):
        for _ in orchestrator.run(run_id):
            pass
    (personas / "sage.yaml").write_text("name: Sage\ndescription: wise\nsystem: Speak fast.\n")
    assert reload_scenario(store, store.run(run_id)).personas["Sage"].system == "Speak slowly."
    # Even with the persona file gone, the frozen definition is all the run needs.
    (personas / "sage.yaml").unlink()
    reloaded = reload_scenario(store, store.run(run_id))
    assert reloaded.personas["Sage"].system == "Speak slowly." and reloaded.roster == ["Sage", "Critic"]


def _mark(db: Path, run_id: int, **values: object) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    with sqlite3.connect(db) as connection:
        connection.execute(f"update runs set {sets} where id = ?", (*values.values(), run_id))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_liveness_of_the_process_behind_a_run() -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    assert process_alive(os.getpid(), now)
    assert not process_alive(None) and not process_alive(_dead_pid(), now)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(100):  # wait for it to exit, without reaping it
            if Path(f"/proc/{zombie.pid}/stat").exists() and " Z " in Path(f"/proc/{zombie.pid}/stat").read_text():
                break
            threading.Event().wait(0.05)
        assert not process_alive(zombie.pid, now)
    finally:
        zombie.wait()
    # A live process that started after the run's last heartbeat cannot be the run: pid reused.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_alive(sleeper.pid, now - timedelta(seconds=1)) is True
        assert not process_alive(sleeper.pid, now - timedelta(hours=1))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_which_runs_may_be_resumed(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store, run_id, _ = start(db, scenario_text(PHASES), ScriptedBackend())
    # Created by this very process, which is alive: refused.
    with pytest.raises(UserError, match=f"still running in process {os.getpid()}"):
        check_resumable(store.run(run_id))
    assert "--force" in (check_resumable(store.run(run_id), force=True) or "")
    _mark(db, run_id, pid=_dead_pid())
    note = check_resumable(store.run(run_id))
    assert note and "which is gone" in note
    _mark(db, run_id, status="interrupted", pid=None)
    assert check_resumable(store.run(run_id)) is None


def test_only_one_of_two_racing_resumes_wins(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store, run_id, _ = start(db, scenario_text(PHASES), ScriptedBackend())
    dead = _dead_pid()
    _mark(db, run_id, pid=dead)
    other = Store.open(db)
    assert store.claim_run(run_id, expected_status="running", expected_pid=dead)
    assert not other.claim_run(run_id, expected_status="running", expected_pid=dead)
    assert store.run(run_id).pid == os.getpid()


@pytest.mark.slow
def test_cli_refuses_completed_alive_and_unknown_runs(
    cli_env: dict[str, str], isolated_env: Path
) -> None:
    store, done = run_to_end(isolated_env, scenario_text(PHASES), ScriptedBackend(default="x"))
    _, alive, _ = start(isolated_env, scenario_text(PHASES), ScriptedBackend())  # pid: this pytest
    store.close()
    cases = {
        str(done): "already completed",
        str(alive): f"still running in process {os.getpid()}",
        "99": "No run 99",
    }
    for run_id, expected in cases.items():
        result = subprocess.run(
            personae_cmd("resume", run_id), capture_output=True, text=True, env=cli_env, timeout=120
        )
        assert result.returncode == 2, (run_id, result.stdout, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr
    listing = subprocess.run(personae_cmd("runs"), capture_output=True, text=True, env=cli_env, timeout=60)
    assert "running" in listing.stdout and "stale" not in listing.stdout


@pytest.mark.slow
def test_cli_runs_marks_a_run_whose_process_died(cli_env: dict[str, str], isolated_env: Path) -> None:
    store, run_id, _ = start(isolated_env, scenario_text(PHASES), ScriptedBackend())
    store.close()
    _mark(isolated_env, run_id, pid=_dead_pid())
    listing = subprocess.run(personae_cmd("runs"), capture_output=True, text=True, env=cli_env, timeout=60)
    assert "stale" in listing.stdout  # "stale (resumable)", however the table wraps it
