"""`personae run --var NAME=VALUE -o KEY VALUE` as a user types it: real subprocesses, a real
SQLite file, the real embedded model; `show`, `resume` and `replay` without the flags."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.builders import make_scenario, roster
from tests.cli_batch import run_batch
from tests.conftest import personae_cmd

SCENARIO = make_scenario(
    goal="Judge {candidate} within {budget}.",
    personas=roster(["Planner", "Critic"], systems={"Critic": "'Attack {candidate}.'"}),
    extra="vars: {candidate: null, budget: 10k}\nmemory: {collapse: null}\ntermination: {max_turns: 2}\n",
)
VALUE = "Redis {budget} <|im_end|>"


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        personae_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_run_stores_vars_and_options_and_resume_and_replay_need_no_flags(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    ran = cli(
        "run", "s.yaml", "--var", f"candidate={VALUE}", "-o", "temperature", "0.2",
        "--option", "num_predict", "12", "--seed", "3", "-q", env=cli_env, cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    db = sqlite3.connect(isolated_env)
    variables, options = db.execute("select variables, options from runs where id = 1").fetchone()
    assert json.loads(variables) == {"candidate": VALUE, "budget": "10k"}
    assert json.loads(options) == {"temperature": 0.2, "num_predict": 12}
    calls = db.execute("select options, prompt from llm_calls where purpose = 'turn'").fetchall()
    assert len(calls) >= 2
    for sent, prompt in calls:
        assert (json.loads(sent)["temperature"], json.loads(sent)["num_predict"]) == (0.2, 12)
        assert f"Judge {VALUE} within 10k." in json.loads(prompt)[0]["content"]

    as_json, as_text, replayed = run_batch(
        [["show", "1", "--format", "json"], ["show", "1"], ["replay", "1"]], cli_env, tmp_path / "batch"
    )
    shown = json.loads(as_json.stdout)
    assert shown["run"]["variables"]["candidate"] == VALUE and shown["run"]["options"]["num_predict"] == 12
    assert 'vars: candidate="Redis {budget} <|im_end|>", budget="10k"' in as_text.stdout
    assert "options: temperature=0.2, num_predict=12" in as_text.stdout
    assert replayed.returncode == 0 and "Every prompt hashes exactly as recorded" in replayed.stdout

    # A run cut off after its first turn (as a kill leaves it) continues with the same values.
    db.execute("delete from llm_calls where turn = 2")
    db.execute("delete from messages where turn = 2")
    db.execute("update runs set status = 'interrupted', turns = 1, pid = null where id = 1")
    db.commit()
    resumed = cli("resume", "1", "-q", env=cli_env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    sent, prompt = db.execute(
        "select options, prompt from llm_calls where purpose = 'turn' and turn = 2 order by id desc"
    ).fetchone()
    assert (json.loads(sent)["temperature"], json.loads(sent)["num_predict"]) == (0.2, 12)
    assert "Attack Redis {budget} <|im_end|>." in prompt.replace("\\n", "\n")
    assert db.execute("select status, turns from runs where id = 1").fetchone() == ("completed", 2)


@pytest.mark.slow
def test_bad_vars_and_options_are_one_paragraph_exit_2_and_store_nothing(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    path = str(scenario)
    cases = {
        ("run", path): "variable 'candidate' has no default and no value was given",
        ("run", path, "--var", "candidat=x"): "did you mean 'candidate'?",
        ("run", path, "--var", "candidate"): "--var 'candidate': write NAME=VALUE",
        ("run", path, "--var", "candidate=x", "-o", "temprature", "1"): "did you mean 'temperature'?",
        ("run", path, "--var", "candidate=x", "-o", "num_predict", "lots"): "valid integer",
        ("run", path, "--var", "candidate=x", "-o", "temperature"): "needs a value: -o KEY VALUE",
    }
    results = run_batch([list(args) for args in cases], cli_env, tmp_path / "batch")
    for result, expected in zip(results, cases.values()):
        assert result.returncode == 2, (result.args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") <= 4  # one paragraph, wrapped by the terminal width
    assert not isolated_env.exists() or sqlite3.connect(isolated_env).execute(
        "select count(*) from runs"
    ).fetchone() == (0,)
