"""The CLI as a user meets it: real subprocesses, a real SQLite file, the real embedded model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, personae_cmd

CASES = {
    "yaml syntax error": ("s.yaml", "name: x\ngoal: [unclosed\n", ["s.yaml", "line 2"]),
    "unknown key": ("s.yaml", "name: x\ngoall: y\npersonas: [Critic]\n", ["goall", "did you mean 'goal'"]),
    "wrong type": ("s.yaml", "name: x\ngoal: y\npersonas: [Critic]\ntermination: {max_turns: many}\n", ["termination.max_turns", "many"]),
    "unknown persona": ("s.yaml", "name: x\ngoal: y\npersonas: [Critc]\n", ["Critc", "did you mean 'Critic'"]),
    "extends cycle": (
        "s.yaml",
        "name: x\ngoal: y\npersonas:\n  - {name: A, extends: B}\n  - {name: B, extends: A}\n",
        ["cycle", "A"],
    ),
    "empty file": ("s.yaml", "", ["s.yaml", "empty"]),
    "not a mapping": ("s.yaml", "- a\n- b\n", ["s.yaml", "mapping"]),
    "missing document": ("s.yaml", "name: x\ngoal: y\npersonas: [Critic]\ndocuments: [nope.md]\n", ["nope.md"]),
}


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        personae_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_message_and_exit_2(
    case: str, command: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    name, text, expected = CASES[case]
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = run_cli(command, name, env=cli_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    message = " ".join(result.stderr.split())
    for piece in expected:
        assert piece.lower() in message.lower(), message


@pytest.mark.parametrize("command", ["run", "validate"])
def test_missing_scenario_file(command: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli(command, "nowhere.yaml", env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nowhere.yaml" in result.stderr


def test_bad_input_stores_nothing(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: x\ngoal: y\npersonas: [Critc]\n", encoding="utf-8")
    run_cli("run", "s.yaml", env=cli_env, cwd=tmp_path)
    assert not isolated_env.exists()


def test_usage_error_is_exit_2(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("run", env=cli_env, cwd=tmp_path)
    assert result.returncode == 2


@pytest.mark.slow
def test_unknown_run_is_exit_2(tmp_path: Path, cli_env: dict[str, str]) -> None:
    from personae.store.repo import Store

    Store.open(cli_env["PERSONAE_DB"]).close()  # a database with no runs (a missing one: test_readonly)
    result = run_cli("show", "42", env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and "No run 42" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_validate_accepts_every_builtin_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    files = sorted(str(p) for p in (REPO / "personas").glob("*.yaml")) + sorted(
        str(p) for p in (REPO / "scenarios").glob("*.yaml")
    )
    result = run_cli("validate", *files, env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(files)


def test_schema_is_json(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("schema", "scenario", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0
    assert "goal" in json.loads(result.stdout)["properties"]


@pytest.mark.slow
def test_init_writes_examples_that_validate(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert run_cli("init", "project", env=cli_env, cwd=tmp_path).returncode == 0
    scenario = tmp_path / "project" / "scenarios" / "cache-review.yaml"
    assert scenario.is_file() and (tmp_path / "project" / "personas" / "critic.yaml").is_file()
    assert run_cli("validate", str(scenario), env=cli_env, cwd=tmp_path).returncode == 0
    again = run_cli("init", "project", env=cli_env, cwd=tmp_path)
    assert "kept" in again.stdout


@pytest.mark.slow
def test_doctor_reports_each_check(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("doctor", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "ollama server" in result.stdout and "fix: start it with `ollama serve`" in result.stdout
    assert "ok embedded backend" in result.stdout and "ok database" in result.stdout


@pytest.mark.slow
def test_builtin_scenario_end_to_end(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    """The README's first command, in miniature: stream a built-in scenario, read it back."""
    result = run_cli(
        "run", str(REPO / "scenarios" / "cache-review.yaml"), "--seed", "1",
        env=cli_env, cwd=tmp_path, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("backend: embedded") and str(isolated_env) in first_line
    rows = sqlite3.connect(isolated_env).execute(
        "select persona, count(*) from messages group by 1"
    ).fetchall()
    counts = dict(rows)
    assert set(counts) == {"Planner", "Analyst", "Critic", "Summarizer"}
    assert sum(counts.values()) >= 8 or "stop_phrase" in result.stdout
    for persona in counts:
        assert persona in result.stdout  # streamed live, one rule per turn
    shown = run_cli("show", "1", env=cli_env, cwd=tmp_path)
    assert shown.returncode == 0
    turns = sqlite3.connect(isolated_env).execute("select turn, content from messages order by turn").fetchall()
    for turn, content in turns:
        assert f"[{turn}]" in shown.stdout and content.strip()[:40] in shown.stdout
    as_json = json.loads(run_cli("show", "1", "--format", "json", env=cli_env, cwd=tmp_path).stdout)
    assert as_json["run"]["status"] == "completed" and len(as_json["messages"]) == len(turns)
    calls = sqlite3.connect(isolated_env).execute(
        "select count(*), sum(prompt_tokens), sum(evaluated_tokens) from llm_calls where purpose = 'turn'"
    ).fetchone()
    assert calls[0] == len(turns) and calls[2] < calls[1]
    listed = json.loads(run_cli("runs", "--format", "json", env=cli_env, cwd=tmp_path).stdout)
    assert listed[0]["id"] == 1 and listed[0]["turns"] == len(turns)


@pytest.mark.slow
def test_russian_scenario_stays_utf8_end_to_end(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    result = run_cli(
        "run", str(REPO / "scenarios" / "zapusk-produkta.yaml"), "--max-turns", "2", "--quiet",
        env=cli_env, cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    personas = [row[0] for row in sqlite3.connect(isolated_env).execute("select persona from messages order by turn")]
    assert len(personas) == 2 and all(any("а" <= ch <= "я" for ch in name.lower()) for name in personas)
    prompt = sqlite3.connect(isolated_env).execute("select prompt from llm_calls order by id limit 1").fetchone()[0]
    system = json.loads(prompt)[0]["content"]
    assert any("а" <= ch <= "я" for ch in system.lower())  # the Russian goal reached the model intact
    shown = run_cli("show", "1", "--format", "md", env=cli_env, cwd=tmp_path)
    assert all(name in shown.stdout for name in personas)
