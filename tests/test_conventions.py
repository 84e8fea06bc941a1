"""What people who use llm, ollama and sqlite-utils expect of a CLI, and issue 12's small defects:
--version, completion, help without `<bool>`, scenarios by name, `personae scenarios`,
`personae new`, which persona wins, plurals, a fork's copied turns, User lines in the summary,
and an install without the setuptools license warning. The CLI runs as a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from personae import __version__
from personae.config import json_schema
from personae.llm.scripted import ScriptedBackend
from tests.conftest import REPO, personae_cmd
from tests.durable_support import run_to_end, scenario_text


def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(personae_cmd(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_version(cli_env: dict[str, str]) -> None:
    for flag in ("--version", "-V"):
        result = cli(flag, env=cli_env)
        assert result.returncode == 0 and result.stdout == f"personae {__version__}\n"


def test_help_shows_no_type_labels_for_flags_or_lists(cli_env: dict[str, str]) -> None:
    """Every command's help, rendered by the real CLI in one subprocess."""
    script = (
        "import sys, typer.main\n"
        "from personae.cli import app\n"
        "group = typer.main.get_command(app)\n"
        "paths = [[]] + [[n] for n in group.commands] + [['db', n] for n in group.commands['db'].commands]\n"
        "for path in paths:\n"
        "    print('=== ' + ' '.join(path))\n"
        "    try:\n"
        "        group.main(args=[*path, '--help'], prog_name='personae', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**cli_env, "COLUMNS": "160"}, timeout=120)
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("=== ")[1:]
    assert len(sections) >= 20
    for section in sections:
        assert "<bool>" not in section and "list[" not in section, section
    top = sections[0]
    for panel in ("Run", "Inspect", "Manage", "Files", "Setup"):
        assert f"─ {panel} " in top, top
    assert "--install-completion" in top


def test_shell_completion_is_typers_own(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "_PERSONAE_COMPLETE": "complete_bash", "COMP_WORDS": "personae ru", "COMP_CWORD": "1"}
    result = subprocess.run([str(Path(sys.executable).parent / "personae")], capture_output=True,
                            text=True, env=env, timeout=60)
    assert set(result.stdout.split()) == {"run", "runs"}, result


@pytest.mark.slow
def test_run_finds_a_scenario_by_name_local_first(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    """`personae run cache-review` runs the built-in; a ./scenarios/cache-review.yaml wins."""
    env = {**cli_env, "PERSONAE_RETRIES": "1", "OLLAMA_HOST": scripted_ollama_server.host}
    model = ["--backend", "ollama", "--model", "smollm2:135m", "--max-turns", "1"]
    builtin = cli("run", "cache-review", *model, env=env, cwd=tmp_path)
    assert builtin.returncode == 0, builtin
    with sqlite3.connect(cli_env["PERSONAE_DB"]) as db:
        path, = db.execute("select scenario_path from runs").fetchone()
    assert path == str((REPO / "personae" / "builtin" / "scenarios" / "cache-review.yaml").resolve())
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "cache-review.yaml").write_text(
        scenario_text("memory: {num_ctx: 2048}\n", name="mine"), encoding="utf-8"
    )
    local = cli("run", "cache-review", *model, env=env, cwd=tmp_path)
    assert "scenario mine" in local.stdout, local
    unknown = cli("run", "cache-reveiw", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "no scenario named 'cache-reveiw'" in unknown.stderr
    assert "checkout-rollout" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_scenarios_and_personas_say_which_one_wins(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "cache-review.yaml").write_text(scenario_text(name="mine"), encoding="utf-8")
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "analyst.yaml").write_text(
        "name: Analyst\ndescription: My own analyst.\nsystem: Count.\n", encoding="utf-8"
    )
    env = {**cli_env, "COLUMNS": "250"}
    listed = cli("scenarios", env=env, cwd=tmp_path).stdout  # piped: TSV, the hidden built-in left out
    rows = [line.split("\t") for line in listed.splitlines() if "cache-review" in line]
    assert rows == [["cache-review", "Decide whether to add a cache.", "scenarios/cache-review.yaml", "false"]]
    every = [line.split("\t") for line in cli("scenarios", "--all", env=env, cwd=tmp_path).stdout.splitlines()]
    assert [r[2:] for r in every if r[0] == "cache-review"] == [
        ["scenarios/cache-review.yaml", "false"], ["built-in", "true"],
    ]
    assert "zapusk-produkta" in listed and "Решить" in listed
    people = [line.split("\t") for line in cli("personas", "-a", env=env, cwd=tmp_path).stdout.splitlines()]
    assert [r[1:] for r in people if r[0] == "Analyst"] == [
        ["My own analyst.", "personas/analyst.yaml", "false"],
        ["Works out what the numbers in the context mean for the decision.", "built-in", "true"],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["persona", "scenario"])
def test_new_writes_a_template_that_validates(kind: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    made = cli("new", kind, "Security Reviewer", env=cli_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / f"{kind}s" / "security-reviewer.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# yaml-language-server: $schema={kind}.schema.json\n")
    assert json.loads((tmp_path / f"{kind}s" / f"{kind}.schema.json").read_text()) == json_schema(kind)
    assert cli("validate", str(path), env=cli_env, cwd=tmp_path).returncode == 0
    assert list(Draft202012Validator(json_schema(kind)).iter_errors(yaml.safe_load(text))) == []
    again = cli("new", kind, "Security Reviewer", env=cli_env, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert path.read_text(encoding="utf-8") == text
    bad = cli("new", kind, "../escape", env=cli_env, cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "escape.yaml").exists()


@pytest.mark.slow
def test_plurals_copied_turns_and_user_lines(
    isolated_env: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, scripted_ollama_server: Any
) -> None:
    monkeypatch.chdir(isolated_env.parent)
    run_to_end(isolated_env, scenario_text("termination: {max_turns: 1}\n"), ScriptedBackend(["Only turn."]))
    inputs = "inputs:\n  - {at_turn: 1, from: User, text: Consider the cost.}\ntermination: {max_turns: 2}\n"
    run_to_end(isolated_env, scenario_text(inputs), ScriptedBackend(["One.", "Two."]))
    assert cli("show", "1", env=cli_env).stdout.splitlines()[0].endswith("· 1 turn")
    replayed = cli("replay", "1", env=cli_env).stdout
    assert "(completed, 1 message)" in replayed and "1 message, 1 model call (1 call for a turn)" in replayed

    from personae.errors import BackendError

    def fail(_request: object) -> str:
        raise BackendError("the model broke")

    scripted_ollama_server.backend.default = fail
    env = {**cli_env, "PERSONAE_RETRIES": "1", "OLLAMA_HOST": scripted_ollama_server.host}
    # Messages 1-3 (two replies, one User line) are copied; the third persona turn is live, and
    # the server fails it, so the fork fails there, after its copied messages.
    fork = cli("replay", "2", "--fork-at", "3", "--max-turns", "3", "--backend", "ollama",
               "--model", "smollm2:135m", env=env)
    assert fork.returncode == 1, fork.stderr
    said = fork.stdout
    rules = [line for line in said.splitlines() if line[:1].isdigit() and "──" in line]
    assert [("copied from run 2" in line) for line in rules] == [True, True, True, False], rules
    assert said.count("copied (no model call)") == 2  # under the two replies; the User line has none
    assert "0.0 s" not in said
    assert "2 turns and 1 User message" in said  # the run's 2 turns, not 3


@pytest.mark.slow
def test_building_the_package_gives_no_license_warning(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.glob("personae-*.whl"))
    assert "project.license" not in result.stdout + result.stderr


def test_help_texts_survive_rich_markup() -> None:
    """typer renders help through rich markup, which silently eats ``[env X]``-style brackets:
    every command's and option's help must print as written."""
    import typer.main
    from rich.text import Text

    from personae.cli import app

    def walk(command: Any, path: str) -> list[tuple[str, str]]:
        texts = [(path, command.help or "")]
        texts += [(f"{path} {p.name}", getattr(p, "help", None) or "") for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            texts += walk(sub, f"{path} {name}")
        return texts

    texts = walk(typer.main.get_command(app), "personae")
    assert len(texts) > 100
    eaten = [(where, text) for where, text in texts if Text.from_markup(text).plain != text]
    assert not eaten, eaten
