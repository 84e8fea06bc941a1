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
from tests.builders import roster
from tests.durable_support import write_scenario
from tests.ollama_server import DEFAULT_MODEL_NAME, OllamaTestServer
from tests.test_resume_http import InstantModel

PERSONAS = roster(["Planner", "Critic"], descriptions={"Critic": "finds flaws"})


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_example_of_the_issue_no_longer_hangs(
    tmp_path: Path, cli_env: dict[str, str], server: OllamaTestServer
) -> None:
    path = write_scenario(tmp_path / "project", router("(a+)+$"))
    done = cli(server, cli_env, *run_args(path))
    assert done.returncode == 0, done.stderr


# -- prompts that cannot fit the window are refused before the first turn ----------------------
def plain(extra: str, *, num_ctx: int = 1024, num_predict: int = 64) -> str:
    return (
        "name: limits\ngoal: Decide on a cache.\n" + extra + PERSONAS
        + f"options: {{num_predict: {num_predict}}}\n"
        + f"memory: {{num_ctx: {num_ctx}, collapse: null}}\ntermination: {{max_turns: 2}}\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "says"),
    [
        (plain("context: |\n  " + "Latency figures and more. " * 2000 + "\n"), "do not fit the model's window"),
        (plain("", num_ctx=4096, num_predict=3900), "only"),
        (plain("", num_predict=4096), "do not fit"),
        (plain("", num_ctx=512, num_predict=200).replace(
            "system: Plan concretely.", "system: " + "Plan concretely and check. " * 60), "do not fit"),
    ],
    ids=["huge-context", "num_predict-near-num_ctx", "num_predict-above-num_ctx", "huge-persona"],
)
def test_a_prompt_that_cannot_fit_is_refused_before_the_first_turn(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, server: OllamaTestServer, text: str, says: str
) -> None:
    path = write_scenario(tmp_path / "project", text)
    done = cli(server, cli_env, *run_args(path))
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "memory.num_ctx" in done.stderr and "num_predict" in done.stderr
    assert not server.chat_bodies()  # nothing was sent
    if isolated_env.exists():
        with sqlite3.connect(isolated_env) as connection:
            assert connection.execute("select count(*) from runs").fetchone() == (0,)


@pytest.mark.slow
def test_resume_checks_the_window_too(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, server: OllamaTestServer
) -> None:
    path = write_scenario(tmp_path / "project", plain(""))
    assert cli(server, cli_env, *run_args(path), "--max-turns", "1").returncode == 0
    with sqlite3.connect(isolated_env) as connection:  # as if it had been made with a wider window
        connection.execute("update runs set status = 'interrupted', num_ctx = 128, max_turns = 3")
    refused = cli(server, cli_env, "resume", "1", "-q")
    assert refused.returncode == 2 and "memory.num_ctx 128" in refused.stderr
    with sqlite3.connect(isolated_env) as connection:
        assert connection.execute("select status, turns from runs").fetchall() == [("interrupted", 1)]


# -- output_schema: checked at load, as JSON Schema and as a llama.cpp grammar -----------------
def with_schema(schema: str) -> str:
    return (
        "name: limits\ngoal: Decide on a cache.\npersonas:\n"
        "  - {name: Planner, description: plans, system: Plan concretely.}\n"
        "  - name: Critic\n    description: finds flaws\n    system: Attack the weakest claim.\n"
        f"    output_schema: {schema}\n"
        "memory: {collapse: null}\ntermination: {max_turns: 2}\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("{type: object, properties: {code: {type: string, pattern: 'abc'}}}", "anchored"),
        ("{type: object, properties: {code: {type: string, pattern: '^(ab$'}}}", "not a valid JSON Schema"),
        ("{type: object, properties: {who: {$ref: 'https://example.com/p.json'}}}", "nothing is fetched"),
        ("{type: object, properties: {who: {$ref: '#/$defs/person'}}}", "not in the schema"),
        ("{type: object, properties: {n: {type: strnig}}}", "not a valid JSON Schema"),
        ("{type: object, properties: {n: {type: string, minLength: -1}}}", "not a valid JSON Schema"),
    ],
    ids=["unanchored-pattern", "invalid-pattern", "remote-ref", "dangling-ref", "unknown-type", "bad-keyword"],
)
def test_an_output_schema_no_backend_can_use_is_refused_at_load(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path, server: OllamaTestServer, schema: str, says: str
) -> None:
    path = write_scenario(tmp_path / "project", with_schema(schema))
    for args in (["validate", str(path)], run_args(path)):
        done = cli(server, cli_env, *args)
        assert done.returncode == 2, done.stderr
        message = " ".join(done.stderr.split())
        assert says in message and "line 8" in message and "personas[1].output_schema" in message, message
    assert not server.chat_bodies() and not isolated_env.exists()


def test_a_usable_output_schema_still_loads(tmp_path: Path, cli_env: dict[str, str], server: OllamaTestServer) -> None:
    schema = (
        "{type: object, properties: {code: {type: string, pattern: '^[A-Z]{3}$'}, "
        "who: {$ref: '#/$defs/person'}}, required: [code], $defs: {person: {type: string}}}"
    )
    path = write_scenario(tmp_path / "project", with_schema(schema))
    done = cli(server, cli_env, "validate", str(path))
    assert done.returncode == 0, done.stderr
