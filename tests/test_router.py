"""The router policy and the LLM selector on scripted replies: rules followed exactly, constraints
honoured, the selector's answer used, checked, or replaced by the default, and all of it stored."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from personae.config import load_scenario_text
from personae.config.models import RouterPolicy
from personae.errors import BackendError, ConfigError
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.policies.router import Router
from personae.orchestrator.selector import read_choice, selection_schema
from personae.orchestrator.state import Utterance
from tests import durable_support
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_to_end, start

# The selector's prompt lists each candidate with its description, so they are sentences here.
DESCRIPTIONS = {
    "Planner": "Makes the plan.", "Analyst": "Brings numbers.", "Critic": "Finds flaws.", "Summarizer": "Sums up."
}
PERSONAS = roster(systems=TERSE, descriptions=DESCRIPTIONS)


def scenario(policy: str, extra: str = "") -> str:
    return make_scenario(policy, name="router-test", personas=PERSONAS, extra=extra)


def speaker_of(request: ChatRequest) -> str:
    return durable_support.speaker_of(request)


def by_speaker(lines: dict[str, list[str]]):
    """A reply function: each persona says its next scripted line."""
    queues = {name: list(said) for name, said in lines.items()}

    def reply(request: ChatRequest) -> str:
        queue = queues[speaker_of(request)]
        return queue.pop(0) if queue else "nothing to add"

    return reply


RULES = """
policy:
  type: router
  start: Planner
  default: Summarizer
  rules:
    - {when: {persona: Planner}, next: Critic}
    - {when: {contains: [risk, риск]}, next: Analyst}
    - {when: {regex: "\\\\d+ ?ms"}, next: Planner}
    - {when: {persona: Analyst, phase: nope}, next: Planner}
"""


def test_router_follows_its_rules_exactly(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        default=by_speaker(
            {
                "Planner": ["Step one: cache order reads.", "Revised: add a TTL of 5 s."],
                "Critic": ["The risk is stale statuses.", "Я вижу риск: кэш устареет.", "Fine."],
                "Analyst": ["A hit rate of 80% cuts p99 to 300 ms.", "No numbers here."],
                "Summarizer": ["FINAL DECISION: cache with TTL."],
            }
        )
    )
    text = scenario(RULES, 'termination: {max_turns: 9, stop_phrase: "FINAL DECISION:"}\n')
    store, run_id = run_to_end(tmp_path / "r.db", text, backend)
    messages = store.messages(run_id)
    said = [(m.persona, (m.meta or {})["route"]) for m in messages]
    assert said == [
        ("Planner", {"by": "start"}),
        ("Critic", {"by": "rule", "rule": 0}),  # Planner spoke
        ("Analyst", {"by": "rule", "rule": 1}),  # "risk"
        ("Planner", {"by": "rule", "rule": 2}),  # "300 ms"; rule 3 never holds (phase)
        ("Critic", {"by": "rule", "rule": 0}),
        ("Analyst", {"by": "rule", "rule": 1}),  # "риск": contains is case-insensitive Unicode
        ("Summarizer", {"by": "default"}),  # nothing matched
    ]
    assert store.run(run_id).stop_reason == "stop_phrase"
    assert [c.purpose for c in store.calls(run_id)] == ["turn"] * 7  # selector: none


def test_constraints_skip_rules_and_pick_the_allowed_fallback(tmp_path: Path) -> None:
    policy = """
policy:
  type: router
  speakers: [Planner, Analyst, Critic]
  default: Critic
  rules:
    - {when: {contains: risk}, next: Critic}
  allowed_transitions: {Critic: [Planner, Analyst], Planner: [Critic, Analyst], Analyst: [Planner]}
"""
    # Critic says "risk": the rule would repeat Critic (allow_repeat false) -> skipped; the default
    # (Critic) is not allowed either -> the first allowed speaker. Analyst may only hand to Planner.
    backend = ScriptedBackend(["a risk", "a risk", "ok", "ok", "ok"])
    store, run_id = run_to_end(tmp_path / "c.db", scenario(policy, "termination: {max_turns: 5}\n"), backend)
    got = [(m.persona, m.meta["route"]["by"]) for m in store.messages(run_id)]
    assert got == [
        ("Critic", "default"),
        ("Planner", "first_allowed"),
        ("Critic", "rule"),
        ("Planner", "first_allowed"),
        ("Critic", "default"),
    ]
    config = {"type": "router", "speakers": ["A", "B", "C"], "allowed_transitions": {"A": ["C"]}}
    router = Router(RouterPolicy.model_validate(config), ["A", "B", "C"])
    assert router.allowed_after("A") == ["C"] and router.allowed_after("B") == ["A", "C"]


def test_rules_are_pure_so_a_resumed_run_routes_the_same(tmp_path: Path) -> None:
    router = Router(RouterPolicy.model_validate({"type": "router", "rules": [
        {"when": {"persona": "User"}, "next": "Analyst"},
        {"when": {"contains": "why"}, "next": "Critic"},
    ]}), ["Planner", "Analyst", "Critic"])
    history = (
        Utterance(1, "Planner", None, "Plan."),
        Utterance(2, "User", None, "What does it cost?"),
    )
    first = router.next_speaker(history)
    assert first is not None and first.persona == "Analyst" and first == router.next_speaker(history)
    after = history + (Utterance(3, "Analyst", None, "why not?"),)
    assert router.next_speaker(after).persona == "Critic"  # type: ignore[union-attr]


SELECTOR = """
policy:
  type: router
  speakers: [Planner, Analyst, Critic]
  selector: llm
  default: Analyst
  rules:
    - {when: {persona: Planner}, next: Critic}
"""


def test_selector_picks_where_no_rule_matches_and_is_stored_with_the_turn(tmp_path: Path) -> None:
    def reply(request: ChatRequest) -> str:
        if request.schema is not None:
            names = request.schema["properties"]["next"]["enum"]
            return json.dumps({"next": names[-1], "reason": "needs a plan"})
        return "a point"

    backend = ScriptedBackend(default=reply)
    store, run_id = run_to_end(tmp_path / "s.db", scenario(SELECTOR, "termination: {max_turns: 4}\n"), backend)
    messages = store.messages(run_id)
    # turn 1: no last message -> selector among all three; Critic (last) chosen.
    # turn 2: Critic spoke, no rule -> selector among Planner, Analyst -> Analyst (last).
    # turn 3: selector among Planner, Critic -> Critic. turn 4: among Planner, Analyst -> Analyst.
    assert [m.persona for m in messages] == ["Critic", "Analyst", "Critic", "Analyst"]
    route = messages[1].meta["route"]
    assert route == {"by": "selector", "reason": "needs a plan", "fallback": False}
    calls = store.calls(run_id)
    assert [c.purpose for c in calls] == ["select", "turn"] * 4
    for select, turn, message in zip(calls[::2], calls[1::2], messages):
        # one transaction: the selection belongs to the turn it chose
        assert select.turn == turn.turn == message.turn
        assert select.message_id == turn.message_id == message.id
        assert select.persona is None and select.schema["properties"]["next"]["enum"]
    assert calls[2].schema == selection_schema(["Planner", "Analyst"])
    # The candidates and their descriptions are in the selection prompt; tokens counted in totals.
    assert "- Planner: Makes the plan." in calls[2].prompt[-1]["content"]
    assert "Critic: Finds flaws" not in calls[2].prompt[-1]["content"].split("Candidates:")[1]
    # The selection prompt is the turn prompt with the instructions swapped: the server reuses the
    # whole transcript prefix for the selection, and again for the turn it chose.
    for select, turn in zip(calls[::2], calls[1::2]):
        assert select.prompt[0] == turn.prompt[0]
        shared = turn.prompt[-1]["content"].rsplit("Now it is ", 1)[0]
        assert select.prompt[-1]["content"].startswith(shared)
        assert select.prompt[-1]["content"][len(shared):].startswith("Choose who speaks next.")
    assert select.manifest[-1] == {"section": "selection", "candidates": ["Planner", "Analyst"]}
    run = store.run(run_id)
    assert run.prompt_tokens == sum(c.prompt_tokens for c in calls)


def test_selector_in_the_classic_layout_builds_its_own_prompt(tmp_path: Path) -> None:
    def reply(request: ChatRequest) -> str:
        if request.schema is not None:
            return json.dumps({"next": request.schema["properties"]["next"]["enum"][0], "reason": "r"})
        return "a point"

    backend = ScriptedBackend(default=reply)
    text = scenario(SELECTOR, "layout: classic\ntermination: {max_turns: 3}\n")
    store, run_id = run_to_end(tmp_path / "k.db", text, backend)
    assert [m.persona for m in store.messages(run_id)] == ["Planner", "Critic", "Planner"]
    select = store.calls(run_id, "select")[-1]
    assert select.prompt[0]["content"].startswith("Several personas deliberate")
    assert "Transcript so far:" in select.prompt[-1]["content"] and "Critic: a point" in select.prompt[-1]["content"]


def test_invalid_or_disallowed_answers_fall_back_to_the_default(tmp_path: Path) -> None:
    answers = iter(
        [
            "I think the Critic should speak.",  # prose: not JSON
            json.dumps({"next": "Summarizer", "reason": "x"}),  # not a candidate
            '{"next": "Critic", "reason": "cut off mid-sent',  # complete name, cut reason: used
            json.dumps(["Critic"]),  # not an object
        ]
    )

    def reply(request: ChatRequest) -> str:
        return next(answers) if "Choose who speaks next" in request.messages[-1].content else "ok"

    backend = Unconstrained(default=reply)
    policy = SELECTOR.replace("    - {when: {persona: Planner}, next: Critic}\n", "    []\n").replace(
        "  rules:\n    []\n", "  allow_repeat: true\n"
    )
    store, run_id = run_to_end(tmp_path / "f.db", scenario(policy, "termination: {max_turns: 4}\n"), backend)
    routes = [m.meta["route"] for m in store.messages(run_id)]
    assert [m.persona for m in store.messages(run_id)] == ["Analyst", "Analyst", "Critic", "Analyst"]
    assert [r["fallback"] for r in routes] == [True, True, False, True]
    assert "not valid JSON" in routes[0]["problem"]
    assert "'Summarizer' is not an allowed speaker" in routes[1]["problem"]
    assert routes[2]["partial"] is True and routes[2]["reason"] == "cut off mid-sent"
    assert "not a JSON object" in routes[3]["problem"]


class Unconstrained(ScriptedBackend):
    """A server that ignores the schema (as an old Ollama would): the text comes back as is."""

    def chat(self, request: ChatRequest, on_token=None):  # type: ignore[no-untyped-def]
        return super().chat(replace(request, schema=None), on_token)


def test_read_choice_accepts_only_candidates() -> None:
    assert read_choice('{"next": "Critic", "reason": "r"}', ["Critic"]) == ("Critic", "r", None, False)
    assert read_choice('{"next": "critic", "reason": "r"}', ["Critic"])[0] is None
    assert read_choice('{"next": "Critic", "reason": "line\nbreak"}', ["Critic"])[0] == "Critic"


def test_a_failed_selector_call_is_recorded_and_fails_the_run(tmp_path: Path) -> None:
    def reply(request: ChatRequest) -> str:
        if request.schema is not None:
            raise BackendError("server went away", transient=True)
        return "ok"

    backend = ScriptedBackend(default=reply)
    text = scenario(SELECTOR, "termination: {max_turns: 3}\n")
    store, run_id, orchestrator = start(tmp_path / "e.db", text, backend)
    with pytest.raises(BackendError):
        for _ in orchestrator.run(run_id):
            pass
    (call,) = store.calls(run_id)
    assert (call.purpose, call.turn, call.error, call.message_id) == ("select", 1, "server went away", None)
    assert store.run(run_id).status == "failed" and store.messages(run_id) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{type: router, rules: [{when: {persona: Planner}, next: Critc}]}", "did you mean 'Critic'"),
        ("{type: router, rules: [{when: {regex: '(('}, next: Critic}]}", "invalid regular expression"),
        ("{type: router, rules: [{when: {}, next: Critic}]}", "needs at least one of"),
        ("{type: router, selector: gpt}", "Use one of: llm, none"),
        ("{type: router, speakers: [Planner, Critic], default: Analyst}", "not one of the router's speakers"),
        ("{type: router, allowed_transitions: {Planner: [Planner]}}", "nobody may follow 'Planner'"),
        ("{type: router, speakers: [Planner]}", "one speaker must let it speak twice"),
        (
            (
                "{type: router, rules: [{when: {persona: Planner}, next: Analyst}], "
                "allowed_transitions: {Planner: [Critic]}}"
            ),
            "does not let 'Analyst' follow 'Planner'",
        ),
        ("{type: router, rules: [{when: {persona: Critic}, next: Critic}]}", "speak twice in a row"),
    ],
)
def test_router_config_errors_point_at_the_field(policy: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_scenario_text(scenario(f"policy: {policy}\n"))
    message = str(caught.value)
    assert expected in message and "line " in message and "at policy" in message
