"""Messages from User: scripted `inputs` at given turns and a person typing with --interactive,
both stored as messages with persona User, never shifting whose turn it is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from personae.config import load_scenario_text
from personae.errors import ConfigError
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.run import Orchestrator, settings_for
from personae.orchestrator.state import InputGiven, RunState, TurnStarted
from tests.conftest import personae_cmd
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_events

BASE = make_scenario(
    name="inputs-test", personas=roster(["Planner", "Analyst", "Critic"], systems=TERSE, described=False)
)


def run_all(text: str, db: Path, ask=None, **overrides: object):  # type: ignore[no-untyped-def]
    backend = ScriptedBackend(default="a point")
    store, run_id, events = run_events(db, text, backend, ask_user=ask, **overrides)
    return store, run_id, backend, events


INPUTS = """inputs:
  - {at_turn: 3, from: User, text: "Budget is 2 engineers.", pin: true}
  - {at_turn: 1, text: "Start with the numbers."}
  - {at_turn: 3, text: "And mind the SLA."}
termination: {max_turns: 4}
"""


def test_scripted_inputs_come_before_the_persona_turn_of_that_number(tmp_path: Path) -> None:
    store, run_id, backend, events = run_all(BASE + INPUTS, tmp_path / "i.db")
    said = [(m.turn, m.persona, m.content) for m in store.messages(run_id)]
    assert said == [
        (1, "User", "Start with the numbers."),
        (2, "Planner", "a point"),
        (3, "Analyst", "a point"),
        (4, "User", "Budget is 2 engineers."),
        (5, "User", "And mind the SLA."),
        (6, "Critic", "a point"),  # round robin goes on as if nobody had interjected
        (7, "Planner", "a point"),  # max_turns counts persona turns: 4 of them
    ]
    metas = [m.meta for m in store.messages(run_id) if m.persona == "User"]
    assert metas[1] == {"source": "inputs", "input": 0, "at_turn": 3, "pin": True}
    assert metas[0]["pin"] is False
    assert [c.persona for c in store.calls(run_id)] == ["Planner", "Analyst", "Critic", "Planner"]
    assert "User: Budget is 2 engineers." in "\n".join(m.content for m in backend.requests[2].messages)
    assert sum(isinstance(e, InputGiven) for e in events) == 3
    assert store.run(run_id).stop_reason == "max_turns"


def test_a_continued_run_neither_repeats_nor_skips_inputs(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    text = BASE + INPUTS
    store, run_id, _, _ = run_all(text, db, max_turns=2)
    assert [m.persona for m in store.messages(run_id)] == ["User", "Planner", "Analyst"]
    loaded = load_scenario_text(text, base_dir=tmp_path)
    backend = ScriptedBackend()
    for _ in Orchestrator(loaded, backend, store, settings_for(loaded, backend)).run(run_id):
        pass
    users = [m.content for m in store.messages(run_id) if m.persona == "User"]
    assert users == ["Start with the numbers.", "Budget is 2 engineers.", "And mind the SLA."]


def test_the_router_can_route_on_user_input(tmp_path: Path) -> None:
    text = BASE + """policy:
  type: router
  default: Planner
  allow_repeat: true
  rules: [{when: {persona: User}, next: Analyst}]
inputs: [{at_turn: 2, text: "What does it cost?"}]
termination: {max_turns: 3}
"""
    store, run_id, _, _ = run_all(text, tmp_path / "u.db")
    assert [m.persona for m in store.messages(run_id)] == ["Planner", "User", "Analyst", "Planner"]


def test_interactive_lines_are_user_turns_and_empty_lines_pass(tmp_path: Path) -> None:
    lines = iter(["", "  Consider a CDN.  ", "", ""])
    seen: list[int] = []

    def ask(state: RunState) -> str | None:
        seen.append(state.turn)
        return next(lines)

    store, run_id, _, events = run_all(BASE + "termination: {max_turns: 3}\n", tmp_path / "h.db", ask=ask)
    said = [(m.persona, m.content, (m.meta or {}).get("source")) for m in store.messages(run_id)]
    assert said == [
        ("Planner", "a point", None),
        ("User", "Consider a CDN.", "interactive"),
        ("Analyst", "a point", None),
        ("Critic", "a point", None),
    ]
    assert seen == [0, 1, 3]  # asked before each persona turn, never after the last
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("InputGiven") < [i for i, e in enumerate(events) if isinstance(e, TurnStarted)][1]


def test_input_config_errors() -> None:
    with pytest.raises(ConfigError, match="at inputs\\[0\\].from: 'Boss' is not allowed"):
        load_scenario_text(BASE + "inputs: [{at_turn: 2, from: Boss, text: hi}]\n")
    with pytest.raises(ConfigError, match="inputs\\[0\\].at_turn"):
        load_scenario_text(BASE + "inputs: [{at_turn: 0, text: hi}]\n")


@pytest.mark.slow
def test_interactive_cli_on_the_real_model(tmp_path: Path, cli_env: dict[str, str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        BASE.replace("system: Plan.}", "system: Plan., options: {num_predict: 8}}")
        .replace("system: Count.}", "system: Count., options: {num_predict: 8}}")
        .replace("system: Attack.}", "system: Attack., options: {num_predict: 8}}")
        + "memory: {num_ctx: 1024, collapse: null}\ntermination: {max_turns: 2}\n",
        encoding="utf-8",
    )
    db = tmp_path / "cli.db"
    done = subprocess.run(
        personae_cmd("run", str(scenario), "--db", str(db), "--interactive", "--seed", "1"),
        input="Keep it cheap.\n\n", env=cli_env, capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "empty line to pass" in done.stdout
    shown = subprocess.run(personae_cmd("show", "1", "--db", str(db), "--format", "json"),
                           env=cli_env, capture_output=True, text=True, check=False)
    import json

    messages = json.loads(shown.stdout)["messages"]
    assert [m["persona"] for m in messages] == ["User", "Planner", "Analyst"]
    assert messages[0]["content"] == "Keep it cheap." and messages[0]["meta"] == {"source": "interactive"}
