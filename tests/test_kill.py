"""Killing `personae run` at many points and resuming it: no committed turn is lost or changed,
turns stay contiguous, nothing is written twice. On the real model, as a subprocess, on each
backend: embedded (in the process), Ollama (``tests/ollama_server.py``, in the test process) and
OpenAI-compatible (``tests/openai_server.py``, personae model serve). The HTTP backends
estimate token counts, so the final replay also checks that a resumed process estimates as the
uninterrupted one would have (``personae.llm.calibration``).

The kills are spread over one run (each kill, then `personae resume`), at different moments: while
the model loads, mid-generation, right after a turn commits, mid-collapse (when collapse is on),
plus a Ctrl-C and a SIGTERM, which must mark the run ``interrupted`` and print the resume command.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario

pytestmark = pytest.mark.slow

MAX_TURNS = 16
COLLAPSE_EVERY = 3
# Collapse answers are capped at 48 tokens: mostly cut off, rejected and replaced by the
# extractive fallback, which is all a kill test needs (the calls happen, and can be interrupted).
SCENARIO = scenario_text(
    f"memory: {{num_ctx: 1024, collapse: {{every_turns: {COLLAPSE_EVERY}, keep_recent: 2, "
    f"summarizer: Critic, max_tokens: 48}}}}\ntermination: {{max_turns: {MAX_TURNS}}}\n",
    num_predict=6,
)

# (what to wait for, how many, then seconds before the signal, which signal). What to wait for:
# "start": the process was launched (it is importing or loading the model); "claimed": the run
# row names this process; "turns": this process committed that many turns; "collapse_due": the
# committed turns reached a multiple of COLLAPSE_EVERY, so a collapse runs now.
KILLS: list[tuple[str, int, float, signal.Signals]] = [
    ("claimed", 0, 0.0, signal.SIGKILL),  # the run row exists, turn 1 is being prepared
    ("start", 0, 0.5, signal.SIGKILL),  # `resume` is loading
    ("claimed", 0, 0.3, signal.SIGKILL),  # mid-generation, most likely
    ("turns", 1, 0.0, signal.SIGKILL),  # right after a commit
    ("turns", 1, 0.05, signal.SIGINT),  # Ctrl-C
    ("collapse_due", 0, 0.0, signal.SIGKILL),  # mid-collapse (when collapse exists)
    ("turns", 1, 0.01, signal.SIGKILL),
    ("collapse_due", 0, 0.2, signal.SIGKILL),  # mid-collapse, a little later
    ("turns", 1, 0.3, signal.SIGTERM),  # a service manager stopping it
    ("turns", 2, 0.0, signal.SIGKILL),
    ("turns", 1, 0.1, signal.SIGKILL),
]


def read(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    for _ in range(200):
        try:
            with sqlite3.connect(db, timeout=30) as connection:
                return connection.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the file is being created
            time.sleep(0.05)
    raise AssertionError(f"cannot read {db}")


def turns(db: Path) -> int | None:
    if not db.exists():
        return None
    rows = read(db, "select turns from runs where id = 1")
    return rows[0][0] if rows else None


def committed(db: Path) -> list[tuple[Any, ...]]:
    """Each message with the turn call that produced it (committed in the same transaction)."""
    return read(
        db,
        "select m.turn, m.persona, m.content, m.raw, c.prompt_hash, c.response "
        "from messages m join llm_calls c on c.message_id = m.id and c.purpose = 'turn' "
        "where m.run_id = 1 order by m.turn",
    )


def check_invariants(db: Path) -> None:
    rows = committed(db)
    numbers = [r[0] for r in rows]
    assert numbers == list(range(1, len(numbers) + 1)), numbers  # contiguous, no duplicates
    message_count = read(db, "select count(*) from messages where run_id = 1")[0][0]
    assert message_count == len(rows)  # every message has exactly one turn call
    (run_turns, prompt, evaluated, completion), = read(
        db, "select turns, prompt_tokens, evaluated_tokens, completion_tokens from runs where id = 1"
    )
    assert run_turns == len(rows)
    sums = read(
        db,
        "select coalesce(sum(prompt_tokens), 0), coalesce(sum(evaluated_tokens), 0), "
        "coalesce(sum(completion_tokens), 0) from llm_calls where run_id = 1",
    )[0]
    assert (prompt, evaluated, completion) == sums  # totals moved in the same transactions


def _waiter(db: Path, process: subprocess.Popen[str], wait_for: str, count: int, at_start: int):  # type: ignore[no-untyped-def]
    launched = time.monotonic()

    def reached() -> bool:
        if wait_for == "start":
            return time.monotonic() - launched >= 0
        pid = read(db, "select pid from runs where id = 1") if db.exists() else []
        if not pid or pid[0][0] != process.pid:
            return False
        done = turns(db) or 0
        if wait_for == "claimed":
            return True
        if wait_for == "turns":
            return done >= at_start + count
        return done > at_start and done % COLLAPSE_EVERY == 0

    return reached


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        personae_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@contextmanager
def backend_args(backend: str, env: dict[str, str], log_dir: Path) -> Iterator[list[str]]:
    """The ``run`` flags for ``backend``, with its server started (and ``env`` pointed at it)."""
    if backend == "embedded":
        yield ["--backend", "embedded"]
    elif backend == "ollama":
        from tests.ollama_server import DEFAULT_MODEL_NAME, serve_ollama

        with serve_ollama() as server:
            env["OLLAMA_HOST"] = server.host
            yield ["--backend", "ollama", "--model", DEFAULT_MODEL_NAME]
    else:
        from personae.llm.embedded import bundled_model_path
        from tests.openai_server import model_server, missing_modules

        if missing_modules():
            pytest.skip(f"personae model serve needs {missing_modules()}")
        with model_server(bundled_model_path(), log_dir) as server:
            env["OPENAI_BASE_URL"] = server.base_url
            yield ["--backend", "openai", "--model", "smollm2"]


@pytest.mark.timeout(1800)  # a dozen model loads on a shared 2-core machine
@pytest.mark.parametrize("backend", ["embedded", "ollama", "openai"])
def test_kill_at_many_points_and_resume(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, backend: str
) -> None:
    with backend_args(backend, cli_env, tmp_path) as flags:
        kill_resume_replay(tmp_path, cli_env, isolated_env, flags)


def kill_resume_replay(tmp_path: Path, cli_env: dict[str, str], db: Path, flags: list[str]) -> None:
    path = write_scenario(tmp_path / "project", SCENARIO)
    first = ["run", str(path), *flags, "-q"]
    again = ["resume", "1", "-q"]
    points: set[tuple[int, float]] = set()
    mid_collapse = 0
    before: list[tuple[Any, ...]] = []
    for number, (wait_for, count, delay, sig) in enumerate(KILLS):
        at_start = turns(db) or 0
        process = start(first if number == 0 else again, cli_env)
        reached = _waiter(db, process, wait_for, count, at_start)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None and not reached():
            time.sleep(0.005)
        assert process.poll() is None, f"kill {number}: the run ended before the kill point"
        time.sleep(delay)
        at = turns(db) or 0
        collapses_before = read(db, "select count(*) from llm_calls where run_id = 1 and purpose = 'collapse'")[0][0]
        process.send_signal(sig)
        _stdout, stderr = process.communicate(timeout=120)
        points.add((at, delay))

        check_invariants(db)
        now = committed(db)
        assert now[: len(before)] == before, f"kill {number} changed committed turns"
        assert "database is locked" not in stderr
        status = read(db, "select status from runs where id = 1")[0][0]
        if sig is signal.SIGKILL:
            assert status in {"running", "interrupted"}  # resume must see the process is gone
        else:
            assert process.returncode == 130, stderr
            assert status == "interrupted"
            assert "personae resume 1" in stderr and "Traceback" not in stderr
        collapses_after = read(db, "select count(*) from llm_calls where run_id = 1 and purpose = 'collapse'")[0][0]
        if at % COLLAPSE_EVERY == 0 and at and collapses_after == collapses_before:
            mid_collapse += 1  # a collapse was due after this turn and had not been committed
        before = now

    final = subprocess.run(personae_cmd(*again), capture_output=True, text=True, env=cli_env, timeout=600)
    assert final.returncode == 0, final.stderr
    check_invariants(db)
    done = committed(db)
    assert [r[0] for r in done] == list(range(1, MAX_TURNS + 1))
    assert done[: len(before)] == before
    assert read(db, "select status, stop_reason from runs where id = 1") == [("completed", "max_turns")]
    assert len(points) >= 10, points

    collapse_ran = read(db, "select count(*) from llm_calls where run_id = 1 and purpose = 'collapse'")[0][0]
    if collapse_ran:
        assert mid_collapse >= 1, "no kill landed while a collapse was due"

    # The stitched-together run replays identically: every prompt after every resume was the one
    # an uninterrupted run would have built from the same transcript.
    replayed = subprocess.run(personae_cmd("replay", "1"), capture_output=True, text=True, env=cli_env, timeout=300)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
