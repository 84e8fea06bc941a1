"""Input at the edges gets one clear paragraph and exit 2, never a traceback (issue 11, defect
12): numbers beyond 64 bits, a model that is not GGUF, a malformed OLLAMA_HOST, a huge YAML
file, `init` into a file, and printed hints that a shell can paste."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from personae.errors import BackendError
from tests.cli_batch import run_batch
from tests.conftest import personae_cmd

HUGE = str(2**64 + 1)
SCENARIO = "name: s\ngoal: g\npersonas: [Planner, Critic]\nmemory: {collapse: null}\ntermination: {max_turns: 2}\n"


def scenario(folder: Path, text: str = SCENARIO) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.yaml"
    path.write_text(text)
    return path


def assert_clear(result: object, code: int = 2) -> None:
    stdout, stderr = result.stdout, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stdout + stderr and "OverflowError" not in stdout + stderr, stderr
    assert result.returncode == code, (result.args, stdout, stderr)  # type: ignore[attr-defined]


def test_numbers_beyond_64_bits_are_usage_errors(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = scenario(tmp_path)
    commands = [
        ["run", str(path), "--seed", HUGE], ["run", str(path), "--seed", "-1"],
        ["run", str(path), "--max-turns", HUGE], ["show", HUGE], ["graph", HUGE],
        ["resume", HUGE], ["replay", HUGE], ["replay", "1", "--fork-at", HUGE],
        ["search", "x", "--run", HUGE], ["search", "x", "--limit", HUGE], ["runs", "--limit", HUGE],
        ["run", str(path), "--retries", HUGE], ["run", str(path), "--retry-delay", "1e400"],
    ]
    for result in run_batch(commands, cli_env, tmp_path / "out"):
        assert_clear(result)
        assert "Invalid value" in result.stderr, result


@pytest.mark.parametrize(
    "field",
    [f"memory: {{num_ctx: {HUGE}}}", f"options: {{seed: {HUGE}}}", f"options: {{top_k: {HUGE}}}",
     f"options: {{num_predict: {HUGE}}}", f"termination: {{max_turns: 2, token_budget: {HUGE}}}",
     f"inputs: [{{at_turn: {HUGE}, text: hi}}]", f"memory: {{collapse: {{every_turns: {HUGE}}}}}"],
)
def test_numbers_beyond_their_range_in_a_file_are_config_errors(
    tmp_path: Path, cli_env: dict[str, str], field: str
) -> None:
    text = SCENARIO.replace("memory: {collapse: null}\ntermination: {max_turns: 2}\n", "") + field + "\n"
    path = scenario(tmp_path, text)
    result = subprocess.run(personae_cmd("validate", str(path)), capture_output=True, text=True, env=cli_env, timeout=60)
    assert_clear(result)
    assert "s.yaml, line 4" in result.stderr and "less than or equal to" in result.stderr


@pytest.mark.slow
def test_an_embedded_model_that_is_no_gguf_file_is_refused(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    path = scenario(tmp_path)
    (tmp_path / "random.gguf").write_bytes(b"\x00\x01not a model" * 100)
    commands = [
        ["run", str(path), "--backend", "embedded", "--model", "llama3.2:3b"],
        ["run", str(path), "--backend", "embedded", "--model", str(tmp_path / "random.gguf")],
    ]
    named, random_bytes = run_batch(commands, cli_env, tmp_path / "out")
    assert_clear(named)
    assert "'llama3.2:3b' is not a .gguf file" in named.stderr and "--backend ollama" in named.stderr
    assert_clear(random_bytes)
    assert "is not a GGUF model" in random_bytes.stderr
    assert not isolated_env.exists()  # refused before any run was stored


@pytest.mark.slow
def test_a_window_the_machine_cannot_allocate_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = scenario(tmp_path, SCENARIO.replace("memory: {collapse: null}", "memory: {num_ctx: 16000000, collapse: null}"))
    result = subprocess.run(
        personae_cmd("run", str(path), "--backend", "embedded"), capture_output=True, text=True, env=cli_env, timeout=300
    )
    assert_clear(result)
    assert "cannot open a window of 16000000 tokens" in result.stderr and "Lower memory.num_ctx" in result.stderr


MALFORMED_HOSTS = [
    "http://[::1", "http://:abc", "host:99999", "http://host:port", "::::", "a b", "ftp://x",
    "\x1b[2J", "http://" + "a" * 300, "http://a..b",
]


@pytest.mark.slow
def test_a_malformed_ollama_host_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    path = scenario(tmp_path)
    doctor_db = str(tmp_path / "doctor.db")
    commands: list[Any] = []
    for host in MALFORMED_HOSTS:
        commands += [
            {"args": ["run", str(path), "--backend", "ollama"], "env": {"OLLAMA_HOST": host}},
            {"args": ["run", str(path), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                      "--db", str(tmp_path / "openai.db")],
             "env": {"OLLAMA_HOST": host, "PERSONAE_RETRIES": "1"}},  # it must not matter here
            {"args": ["doctor", "--db", doctor_db], "env": {"OLLAMA_HOST": host}},
        ]
    results = run_batch(commands, cli_env, tmp_path / "out")
    for host, (ran, openai, doctor) in zip(MALFORMED_HOSTS, zip(*[iter(results)] * 3)):
        assert_clear(ran)
        assert "OLLAMA_HOST=" in ran.stderr and "is not a server address" in ran.stderr, host
        assert "\x1b" not in ran.stderr
        assert "Traceback" not in openai.stdout + openai.stderr and "OLLAMA_HOST" not in openai.stderr
        assert "Traceback" not in doctor.stdout + doctor.stderr
        assert "is not a server address" in doctor.stdout  # a failed check; the others still run
    assert not isolated_env.exists()  # refused before a run was stored


def test_a_huge_yaml_file_is_refused_at_once_naming_its_size(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """57 MB of keys without an alias took 214 s and 2 GB to be refused as an "alias bomb"."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write("name: s\ngoal: g\npersonas: [Critic]\ncontext:\n")
        for i in range(400_000):
            handle.write(f"  key{i}: value\n")
    size = path.stat().st_size
    assert size > 4 * 1024 * 1024
    started = time.monotonic()
    result = subprocess.run(personae_cmd("validate", str(path)), capture_output=True, text=True, env=cli_env, timeout=60)
    assert_clear(result)
    assert f"{size:,} bytes" in result.stderr and "4,194,304" in result.stderr
    assert time.monotonic() - started < 20  # the interpreter's start, not the file's parse


def test_init_into_a_file_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "taken").write_text("x")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "personas").write_text("a file where a folder goes")
    file, inside = run_batch([["init", str(tmp_path / "taken")], ["init", str(tmp_path / "proj")]], cli_env, tmp_path / "out")
    assert_clear(file)
    assert "is a file, not a folder" in file.stderr
    assert_clear(inside)
    assert "Cannot write" in inside.stderr and "personas" in inside.stderr


@pytest.mark.slow
def test_printed_hints_quote_the_database_path_for_a_shell(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    path = scenario(tmp_path, SCENARIO.replace("{collapse: null}", "{num_ctx: 2048, collapse: null}"))
    db = tmp_path / "my runs; rm -rf ~" / "p.db"
    db.parent.mkdir()

    def fail(_request: object) -> str:
        raise BackendError("the model broke")  # the server answers 400: the run fails

    scripted_ollama_server.backend.default = fail
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    result = subprocess.run(
        personae_cmd("run", str(path), "--backend", "ollama", "--model", "smollm2:135m", "--db", str(db), "-q"),
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert_clear(result, code=1)
    quoted = shlex.quote(str(db))
    assert f"personae resume 1 --db {quoted}" in result.stderr
    assert f"personae show 1 --db {quoted}" in result.stdout
    assert shlex.split(f"personae resume 1 --db {quoted}")[-1] == str(db)


@pytest.mark.slow
def test_lone_surrogates_from_a_file_or_a_server_never_reach_the_database(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    """JSON and YAML can both escape a lone surrogate ("\\udcff"): no character, and SQLite's
    UTF-8 cannot store it (the run's commit failed with a UnicodeEncodeError)."""
    bad = scenario(tmp_path / "bad", SCENARIO + 'inputs: [{at_turn: 1, text: "hi \\udcff"}]\n')
    good = scenario(tmp_path / "good", SCENARIO.replace("{collapse: null}", "{num_ctx: 2048, collapse: null}"))
    scripted_ollama_server.backend.default = "half \udcff of a pair"  # sent as JSON: "\udcff"
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    refused, ran, shown = run_batch(
        [["validate", str(bad)], ["run", str(good), "--backend", "ollama", "--model", "smollm2:135m", "-q"],
         ["show", "1", "--format", "json"]],
        env, tmp_path / "out",
    )
    assert_clear(refused)
    assert "line 6" in refused.stderr and "lone surrogate" in refused.stderr
    assert_clear(ran, code=0)
    import json

    contents = [m["content"] for m in json.loads(shown.stdout)["messages"]]
    assert contents and all(c == "half \ufffd of a pair" for c in contents)
