"""Names are one visible line, ``User`` is reserved in every spelling, and every run loop ends
whatever a policy or a name does (issue 11, defects 1 and 2)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from personae.config import load_scenario_text
from personae.config.names import canonical_name, is_reserved, name_problem
from personae.errors import ConfigError
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.orchestrator.state import Stopped
from personae.store.repo import Store
from tests.conftest import personae_cmd

USER_SPELLINGS = [
    "User", "user", "USER", "U\u200bser", "Us\u00ader", "\u200dUser\u2060", "Ｕｓｅｒ", "ＵＳＥＲ",
    "User\ufe0f", "U\u034fser", "User ",
]


def inline_persona(name: str) -> str:
    return (
        "name: s\ngoal: g\npersonas:\n"
        f"  - {{name: {json.dumps(name)}, system: s}}\n  - {{name: Critic, system: s}}\n"
    )


@pytest.mark.parametrize("name", USER_SPELLINGS, ids=ascii)
def test_user_is_reserved_in_every_spelling(tmp_path: Path, name: str) -> None:
    assert is_reserved(name)
    with pytest.raises(ConfigError, match="reserved for User") as info:
        load_scenario_text(inline_persona(name), path=Path("s.yaml"), base_dir=tmp_path)
    message = str(info.value)
    assert "s.yaml, line 4" in message and "personas[0].name" in message


def test_names_that_only_look_like_user_are_not_reserved() -> None:
    for name in ("Users", "Userland", "Us er", "Usher"):
        assert not is_reserved(name), name


def test_a_persona_file_named_user_is_refused_with_its_path(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "user.yaml").write_text('name: "U\\u200bser"\nsystem: s\n')
    (tmp_path / "s.yaml").write_text("name: s\ngoal: g\npersonas: [Critic]\n")
    result = subprocess.run(
        personae_cmd("validate", str(tmp_path / "personas" / "user.yaml")),
        capture_output=True, text=True, env=cli_env, timeout=60,
    )
    assert result.returncode == 2, result
    assert "user.yaml, line 1" in result.stderr and "reserved for User" in result.stderr
    assert "'U\\u200bser'" in result.stderr  # the invisible character is spelt out
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "name",
    ["Crit\x1b[2Jic", "Critic\r", "Crit\x85ic", "Crit\u2028ic", "Crit\u2029ic", "Crit\x07ic",
     "Crit\tic", "Crit\x9bic", "\u200b", "\u200b\u200d\u2060", "\u3164", "\u2800", "\ufe0f"],
    ids=ascii,
)
@pytest.mark.parametrize("where", ["persona", "scenario", "phase"])
def test_names_with_controls_or_nothing_visible_are_refused(tmp_path: Path, name: str, where: str) -> None:
    quoted = json.dumps(name)
    if where == "persona":
        text = inline_persona(name)
    elif where == "scenario":
        text = f"name: {quoted}\ngoal: g\npersonas: [Critic]\n"
    else:
        text = (
            "name: s\ngoal: g\npersonas: [Critic]\n"
            f"policy: {{type: phases, phases: [{{name: {quoted}, speakers: [Critic]}}]}}\n"
        )
    assert name_problem(name) is not None
    with pytest.raises(ConfigError) as info:
        load_scenario_text(text, path=Path("s.yaml"), base_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("s.yaml, line ")
    assert "name" in message
    assert "\x1b" not in message and "\r" not in message  # the message itself shows it escaped


def test_names_a_reader_cannot_tell_apart_are_one_persona(tmp_path: Path) -> None:
    text = (
        "name: s\ngoal: g\npersonas:\n  - {name: Critic, system: s}\n"
        '  - {name: "Crit\\u200bic", system: s}\n'
    )
    with pytest.raises(ConfigError, match="listed twice"):
        load_scenario_text(text, path=Path("s.yaml"), base_dir=tmp_path)


def test_canonical_names_fold_case_width_and_invisible_characters() -> None:
    assert canonical_name("Crit\u200bic") == canonical_name("ＣＲＩＴＩＣ") == "critic"
    assert canonical_name("Devil's\u00a0 Advocate") == "devil's advocate"
    assert canonical_name("Критик") == "критик"


def test_every_run_loop_is_bounded_by_its_total_turns(tmp_path: Path) -> None:
    """A persona the turn count does not see (as `User` once was: a run of 3,100 turns in a
    minute) still ends: the loop caps every message of the run, whoever wrote it."""
    text = "name: s\ngoal: g\npersonas:\n  - {name: Critic, system: s}\ntermination: {max_turns: 3}\n"
    loaded = load_scenario_text(text, base_dir=tmp_path)
    # Build what validation now refuses: the only persona is named User (for instance a run
    # stored by an older version and resumed), so max_turns never counts a turn.
    user = loaded.personas["Critic"].model_copy(update={"name": "User"})
    scenario = loaded.scenario.model_copy(update={"personas": [user]})
    loaded = replace(loaded, scenario=scenario, personas={"User": user})
    backend = ScriptedBackend(default="more")
    store = Store.open(tmp_path / "p.db")
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    events = []
    for event in Orchestrator(loaded, backend, store, settings).run(run_id):
        events.append(event)
        assert len(events) < 200, "the run did not stop"
    stopped = events[-1]
    assert isinstance(stopped, Stopped) and stopped.reason.startswith("turn_cap")
    run = store.run(run_id)
    assert run.status == "completed" and run.stop_reason.startswith("turn_cap")
    assert run.turns == 2 * 3  # 2 x max_turns + no scripted inputs


def test_the_turn_cap_never_cuts_a_run_within_its_limits(tmp_path: Path) -> None:
    """Every persona turn plus a typed line before each plus every scripted input fits."""
    text = (
        "name: s\ngoal: g\npersonas:\n  - {name: Critic, system: s}\n  - {name: Planner, system: s}\n"
        "termination: {max_turns: 4}\n"
        "inputs: [{at_turn: 1, text: a}, {at_turn: 2, text: b}, {at_turn: 2, text: c}]\n"
    )
    loaded = load_scenario_text(text, base_dir=tmp_path)
    backend = ScriptedBackend(default="fine")
    store = Store.open(tmp_path / "p.db")
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    orchestrator = Orchestrator(loaded, backend, store, settings, ask_user=lambda _s: "typed")
    stopped = list(orchestrator.run(run_id))[-1]
    assert isinstance(stopped, Stopped) and stopped.reason == "max_turns"
    assert store.run(run_id).turns == 4 + 4 + 3
