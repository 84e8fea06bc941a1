"""Limits checked before they bite: a router regex that backtracks forever, a prompt header or
reply budget that cannot fit the window, an ``output_schema`` llama.cpp cannot turn into a grammar.

Each is a CLI subprocess on real files, against an instant model behind the Ollama API.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import personae_cmd
from tests.durable_support import write_scenario
from tests.ollama_server import DEFAULT_MODEL_NAME, OllamaTestServer
from tests.test_resume_http import InstantModel

PERSONAS = """\
personas:
  - {name: Planner, description: plans, system: Plan concretely.}
  - {name: Critic, description: finds flaws, system: Attack the weakest claim.}
"""


def router(pattern: str) -> str:
    return (
        "name: limits\ngoal: Decide on a cache.\n" + PERSONAS
        + "policy:\n  type: router\n  start: Planner\n  default: Planner\n  rules:\n"
        + f"    - {{when: {{regex: '{pattern}'}}, next: Critic}}\n"
        + "memory: {collapse: null}\ntermination: {max_turns: 4}\n"
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OllamaTestServer]:
    model_file = tmp_path / "instant.gguf"
    model_file.write_bytes(b"GGUF")
    model = InstantModel(model_file)
    model.default = lambda request: "a" * 60 + "!"  # what catastrophic patterns choke on
    with OllamaTestServer(model) as running:
        yield running


def cli(server: OllamaTestServer, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = env | {"OLLAMA_HOST": server.host}
    done = subprocess.run(personae_cmd(*args), capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def run_args(path: Path) -> list[str]:
    return ["run", str(path), "--backend", "ollama", "--model", DEFAULT_MODEL_NAME, "-q"]


def test_a_catastrophic_router_regex_fails_the_run_naming_the_rule(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, server: OllamaTestServer
) -> None:
    path = write_scenario(tmp_path / "project", router("(a|aa)+$"))
    started = time.monotonic()
    failed = cli(server, cli_env, *run_args(path))
    assert time.monotonic() - started < 60
    assert failed.returncode == 2, failed.stderr
    assert "Router rule 1" in failed.stderr and "(a|aa)+$" in failed.stderr
    assert "personae resume 1" in failed.stderr
    with sqlite3.connect(isolated_env) as connection:
        assert connection.execute("select status, turns from runs").fetchall() == [("failed", 1)]

    # Resume with the same stored rule fails the same way, quickly; with the rule fixed, it goes on.
    again = cli(server, cli_env, "resume", "1", "-q")
    assert again.returncode == 2 and "Router rule 1" in again.stderr
    path.write_text(router("^a+!$"), encoding="utf-8")
    fixed = cli(server, cli_env, "resume", "1", "-q", "--scenario", str(path))
    assert fixed.returncode == 0, fixed.stderr
    with sqlite3.connect(isolated_env) as connection:
        assert connection.execute("select status, turns from runs").fetchall() == [("completed", 4)]
        speakers = [r[0] for r in connection.execute("select persona from messages order by turn")]
        yaml_now = connection.execute("select scenario_yaml from runs").fetchone()[0]
    assert speakers[:2] == ["Planner", "Critic"] and "^a+!$" in yaml_now  # the fixed rule routed


def test_the_example_of_the_issue_no_longer_hangs(
    tmp_path: Path, cli_env: dict[str, str], server: OllamaTestServer
) -> None:
    path = write_scenario(tmp_path / "project", router("(a+)+$"))
    done = cli(server, cli_env, *run_args(path))
    assert done.returncode == 0, done.stderr
