"""SIGKILL, resume, replay on the Ollama API with an instant model: every prompt after every
resume is the one an uninterrupted run would have built.

The HTTP backends estimate prompt sizes from characters and calibrate the ratio on the first long
enough reply; budgets, collapse groups and memory blocks follow that ratio. The instant model
counts tokens by whitespace (about six characters a token, not the estimator's starting four), so a resumed process that started from
the default ratio (or from a ratio that moved since the last collapse) would build other prompts,
and ``replay`` would say so: the kill after turn 11 caught the first, the one after 19 the second.
The real-model version of this test, on all three backends, is ``tests/test_kill.py``.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personae.llm.base import ChatMessage, ChatRequest, ChatResult
from personae.llm.calibration import calibrate_from_calls
from personae.llm.estimate import CharTokenEstimator
from personae.llm.ollama import OllamaBackend
from personae.llm.scripted import ScriptedBackend
from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario
from tests.ollama_server import DEFAULT_MODEL_NAME, OllamaTestServer
from tests.test_kill import check_invariants, read, turns

WORDS = "cache latency shard replica eviction budget rollout canary p99 throughput queue".split()
MAX_TURNS = 40
SCENARIO = scenario_text(
    "memory: {num_ctx: 1024, collapse: {at_fraction: 0.5, every_turns: 5, keep_recent: 3, "
    "summarizer: Critic, max_tokens: 64}}\n"
    f"termination: {{max_turns: {MAX_TURNS}}}\n",
    num_predict=60,
)


def reply_for(request: ChatRequest) -> str:
    """A reply that depends on the whole prompt, of varying length; valid JSON for collapses."""
    digest = hashlib.sha256(json.dumps([m.to_dict() for m in request.messages]).encode()).digest()
    text = " ".join(WORDS[b % len(WORDS)] for b in digest[: 12 + digest[0] % 20])
    if request.schema is None:
        return text
    props = request.schema.get("properties", {})
    if "facts" not in props:
        return json.dumps({"summary": text})
    cite = props["facts"]["items"]["properties"]["turns"]["items"]["enum"][:1]
    return json.dumps(
        {"summary": text, "facts": [{"text": text[:40], "turns": cite}], "decisions": [], "open_questions": []}
    )


class InstantModel(ScriptedBackend):
    """What ``OllamaTestServer`` needs of a model, answering at once (plus a small pause per
    call, so a kill can land between turns)."""

    def __init__(self, model_file: Path) -> None:
        super().__init__(default=reply_for, num_ctx=1024)
        self.model_path = model_file
        self.llm = type("Meta", (), {"metadata": {}})()

    def chat(self, request: ChatRequest, on_token=None) -> ChatResult:  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        return super().chat(request, on_token=on_token)


@pytest.fixture
def instant_ollama(tmp_path: Path) -> Iterator[OllamaTestServer]:
    model_file = tmp_path / "instant.gguf"
    model_file.write_bytes(b"GGUF")
    with OllamaTestServer(InstantModel(model_file)) as server:
        yield server


@pytest.mark.slow
def test_killed_and_resumed_ollama_run_replays_identically(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    db = isolated_env
    env = cli_env | {"OLLAMA_HOST": instant_ollama.host}
    path = write_scenario(tmp_path / "project", SCENARIO)
    first = ["run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"]
    again = ["resume", "1", "-q"]
    kills = 0
    for number, kill_after in enumerate((11, 19)):
        process = subprocess.Popen(
            personae_cmd(*(first if number == 0 else again)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and (turns(db) or 0) < kill_after:
            time.sleep(0.005)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        kills += 1
        check_invariants(db)
    final = subprocess.run(personae_cmd(*again), capture_output=True, text=True, env=env, timeout=120)
    assert final.returncode == 0, final.stderr
    check_invariants(db)
    assert read(db, "select status, turns from runs where id = 1") == [("completed", MAX_TURNS)]
    collapses = read(db, "select count(*) from llm_calls where run_id = 1 and purpose = 'collapse'")[0][0]
    assert collapses >= 4 and kills == 2

    replayed = subprocess.run(personae_cmd("replay", "1"), capture_output=True, text=True, env=env, timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_the_estimator_calibrates_once_and_a_fresh_one_learns_it_from_stored_calls() -> None:
    estimator = CharTokenEstimator()
    short = (ChatMessage("user", "short"),)
    long = (ChatMessage("system", "x" * 300), ChatMessage("user", "y" * 100))
    estimator.calibrate(short, 50)  # template-dominated: ignored, not the calibration
    estimator.calibrate(long, 3 + 8 + 200)  # 2 characters a token
    estimator.calibrate(long, 3 + 8 + 50)  # later replies change nothing
    assert estimator.chars_per_token == 2.0

    class Row:  # what an llm_calls row holds
        def __init__(self, messages: tuple[ChatMessage, ...], tokens: int, response: str | None) -> None:
            self.prompt = [m.to_dict() for m in messages]
            self.prompt_tokens, self.response = tokens, response

    rows = [Row(long, 3 + 8 + 100, None), Row(short, 50, "ok"), Row(long, 3 + 8 + 200, "ok"), Row(long, 61, "ok")]
    fresh = OllamaBackend("m", host="http://127.0.0.1:9")
    assert calibrate_from_calls(fresh, lambda: rows) == 3  # the failed call (no reply) is skipped
    assert fresh.count_text_tokens("abcd") == 2
    assert calibrate_from_calls(ScriptedBackend(), lambda: 1 / 0) == 0  # exact counters: no read


# -- resume reads documents from what the run stored, never from the current directory ----------
DOCUMENTED = scenario_text("documents: [notes.md]\ntermination: {max_turns: 6}\nmemory: {collapse: null}\n")


def _memory_text(db: Path) -> str:
    return " ".join(r[0] or "" for r in read(db, "select text from memory_nodes"))


def _resume_elsewhere(env: dict[str, str], server: OllamaTestServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        personae_cmd("resume", "1", "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"),
        capture_output=True, text=True, env=env | {"OLLAMA_HOST": server.host}, cwd=cwd, timeout=60,
    )


@pytest.mark.slow
def test_resume_after_the_folder_moved_uses_the_imported_documents(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    from tests.durable_support import start
    from tests.test_resume import interrupt_at

    project = tmp_path / "project"
    path = write_scenario(project, DOCUMENTED)
    (project / "notes.md").write_text("# Notes\n\nORIGINAL figures: p99 is 900 ms.\n", encoding="utf-8")
    store, run_id, orchestrator = start(isolated_env, path, interrupt_at(3))
    with pytest.raises(KeyboardInterrupt):
        list(orchestrator.run(run_id))
    store.close()
    project.rename(tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    write_scenario(elsewhere, "unrelated", name="notes.md")
    (elsewhere / "notes.md").write_text("IMPOSTER text from the working directory\n", encoding="utf-8")

    done = _resume_elsewhere(cli_env, instant_ollama, elsewhere)
    assert done.returncode == 0, done.stderr
    memory = _memory_text(isolated_env)
    assert "ORIGINAL figures" in memory and "IMPOSTER" not in memory
    prompts = " ".join(r[0] for r in read(isolated_env, "select prompt from llm_calls"))
    assert "IMPOSTER" not in prompts
    assert read(isolated_env, "select status, turns from runs") == [("completed", 6)]


@pytest.mark.slow
def test_resume_of_a_run_that_never_imported_its_documents_is_refused_once_they_moved(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    from personae.store.repo import NewRun, Store

    project = tmp_path / "project"
    path = write_scenario(project, DOCUMENTED)
    (project / "notes.md").write_text("ORIGINAL\n", encoding="utf-8")
    with Store.open(isolated_env) as store:  # a run cut off between its row and its documents
        store.create_run(NewRun(
            scenario_name="durable", scenario_path=str(path), scenario_yaml=DOCUMENTED,
            backend="ollama", model=DEFAULT_MODEL_NAME, layout="cache_friendly", num_ctx=1024,
            max_turns=6, seed=None,
        ))
        store.finish_run(1, "interrupted", stop_reason="interrupted")
    project.rename(tmp_path / "moved")
    (tmp_path / "notes.md").write_text("IMPOSTER\n", encoding="utf-8")

    refused = _resume_elsewhere(cli_env, instant_ollama, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "never read from the current directory" in refused.stderr and str(project) in refused.stderr
    assert "IMPOSTER" not in _memory_text(isolated_env)


@pytest.mark.slow
def test_an_unreadable_document_leaves_no_run_behind(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    project = tmp_path / "project"
    path = write_scenario(project, DOCUMENTED)
    (project / "notes.md").write_bytes(b"\xff\xfe not UTF-8 \x80")
    env = cli_env | {"OLLAMA_HOST": instant_ollama.host}
    failed = subprocess.run(
        personae_cmd("run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"),
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "notes.md" in failed.stderr and "UTF-8" in failed.stderr
    assert not isolated_env.exists() or read(isolated_env, "select count(*) from runs") == [(0,)]


@pytest.mark.slow
def test_sigterm_in_the_first_seconds_never_leaves_a_running_run(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    """At any moment — importing, opening the database, making the run row, the first turn — a
    SIGTERM ends ``personae run`` as interrupted (or before anything was written)."""
    path = write_scenario(tmp_path / "project", scenario_text("termination: {max_turns: 40}\n"))
    env = cli_env | {"OLLAMA_HOST": instant_ollama.host}
    run = ["run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"]
    def db_file() -> bool:
        return isolated_env.exists()

    def statuses_now() -> list[str]:
        try:
            with sqlite3.connect(isolated_env, timeout=5) as connection:
                return [r[0] for r in connection.execute("select status from runs")]
        except sqlite3.Error:  # not created yet, or no tables yet
            return []

    def run_row() -> bool:
        return db_file() and bool(statuses_now())

    statuses = set()
    for ready in (lambda: True, db_file, db_file, run_row, run_row, run_row):
        process = subprocess.Popen(personae_cmd(*run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while not ready() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGTERM)
        _out, stderr = process.communicate(timeout=30)
        assert "Traceback" not in stderr, stderr
        rows = statuses_now() if db_file() else []
        assert "running" not in rows, (rows, stderr)
        statuses |= set(rows)
    assert "interrupted" in statuses


@pytest.mark.slow
def test_resume_force_racing_a_live_run_is_a_clear_conflict(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, instant_ollama: OllamaTestServer
) -> None:
    """Two processes continuing one run collide on the next turn: the loser says so in one
    paragraph (no IntegrityError traceback), and what is committed stays whole."""
    path = write_scenario(tmp_path / "project", scenario_text("memory: {collapse: null}\ntermination: {max_turns: 300}\n"))
    env = cli_env | {"OLLAMA_HOST": instant_ollama.host}
    owner = subprocess.Popen(
        personae_cmd("run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 60
    while (turns(isolated_env) or 0) < 3 and owner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    intruder = subprocess.run(
        personae_cmd("resume", "1", "--force", "-q"), capture_output=True, text=True, env=env, timeout=120
    )
    _out, owner_err = owner.communicate(timeout=120)
    both = owner_err + intruder.stderr
    assert "Traceback" not in both and "IntegrityError" not in both, both
    assert "Another process wrote to the same run" in both
    assert {owner.returncode, intruder.returncode} <= {0, 1}
    check_invariants(isolated_env)
