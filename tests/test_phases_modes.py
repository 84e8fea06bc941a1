"""Phases with modes and a policy per phase: plan (speakers) → debate (router) → review (reflect) →
conclude, on scripted replies; the position in the phases re-derived from the transcript alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from personae.config import builtin_dir, load_scenario, load_scenario_text
from personae.config.modes import BUILTIN_MODES
from personae.errors import ConfigError
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.policies import make_policy
from personae.orchestrator.run import (
    Orchestrator,
    load_history,
    settings_for,
)
from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests import durable_support
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_to_end

PERSONAS = roster(systems=TERSE)

FOUR_PHASES = """
modes:
  critique: "Mode: critique. Only the single worst flaw."
  rollout: "Mode: rollout. Steps with traffic shares."
policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planner], mode: plan}
    - name: debate
      mode: critique
      turns: 3
      policy:
        type: router
        speakers: [Analyst, Critic, Planner]
        rules:
          - {when: {persona: Planner}, next: Critic}
          - {when: {persona: Critic}, next: Analyst}
          - {when: {persona: Analyst}, next: Planner}
    - name: review
      mode: rollout
      policy: {type: reflect, author: Planner, critic: Critic, max_rounds: 2}
    - {name: conclude, speakers: [Summarizer], mode: conclude}
termination: {max_turns: 40}
"""


def speaker_of(request: ChatRequest) -> str:
    return durable_support.speaker_of(request)


def reply(request: ChatRequest) -> str:
    if request.schema is not None:  # the reviewer rejects once, then approves
        rejected = sum(1 for r in reply.seen if r.schema is not None)  # type: ignore[attr-defined]
        reply.seen.append(request)  # type: ignore[attr-defined]
        return json.dumps({"approve": rejected > 0, "issues": [] if rejected else ["No owner."]})
    reply.seen.append(request)  # type: ignore[attr-defined]
    return f"{speaker_of(request)} speaking."


def run_all(text: str, db: Path, **overrides: object) -> tuple[Store, int, ScriptedBackend]:
    reply.seen = []  # type: ignore[attr-defined]
    backend = ScriptedBackend(default=reply)
    store, run_id = run_to_end(db, text, backend, **overrides)
    return store, run_id, backend


def scenario(policy: str) -> str:
    return make_scenario(policy, name="phases-test", goal="Decide.", personas=PERSONAS)


def test_plan_debate_review_conclude(tmp_path: Path) -> None:
    store, run_id, backend = run_all(scenario(FOUR_PHASES), tmp_path / "p.db")
    messages = store.messages(run_id)
    got = [(m.persona, m.phase, (m.meta or {}).get("mode"), (m.meta or {}).get("reflect")) for m in messages]
    assert got == [
        ("Planner", "plan", "plan", None),
        ("Critic", "debate", "critique", None),  # the router's rule on the plan phase's Planner
        ("Analyst", "debate", "critique", None),
        ("Planner", "debate", "critique", None),  # the phase's 3 turns are used
        ("Planner", "review", "rollout", "draft"),
        ("Critic", "review", "rollout", "verdict"),
        ("Planner", "review", "rollout", "revision"),
        ("Critic", "review", "rollout", "verdict"),  # approved: the review phase ends
        ("Summarizer", "conclude", "conclude", None),
    ]
    assert store.run(run_id).stop_reason == "phases_complete"
    prompts = [r.messages[-1].content for r in backend.requests]
    # a mode adds its instructions after the persona's own; a scenario's wording wins
    assert prompts[0].rstrip().endswith(BUILTIN_MODES["plan"])
    assert "Mode: critique. Only the single worst flaw." in prompts[1]
    assert BUILTIN_MODES["critique"] not in prompts[1]
    assert "Mode: rollout. Steps with traffic shares.\nWrite a first draft" in prompts[4]
    assert prompts[8].rstrip().endswith(BUILTIN_MODES["conclude"])


def test_position_is_rederived_from_the_transcript(tmp_path: Path) -> None:
    """What a resumed run relies on: at every point, the policy over the stored transcript names
    the persona who actually spoke next."""
    store, run_id, _ = run_all(scenario(FOUR_PHASES), tmp_path / "p.db")
    loaded = load_scenario_text(scenario(FOUR_PHASES))
    policy = make_policy(loaded.scenario.policy, loaded.roster, {})
    history = load_history(store, run_id)
    for i, message in enumerate(history):
        speaker = policy.next_speaker(tuple(history[:i]))
        assert speaker is not None and (speaker.persona, speaker.phase) == (message.persona, message.phase)
    assert policy.next_speaker(tuple(history)) is None


def test_a_run_continues_where_it_stopped(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    text = scenario(FOUR_PHASES)
    store, run_id, _ = run_all(text, db, max_turns=5)
    assert [m.persona for m in store.messages(run_id)][-1] == "Planner"  # the review's draft
    loaded = load_scenario_text(text, base_dir=tmp_path)
    reply.seen = []  # type: ignore[attr-defined]
    backend = ScriptedBackend(default=reply)
    settings = settings_for(loaded, backend)
    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
        pass
    assert [m.persona for m in store.messages(run_id)][5:] == ["Critic", "Planner", "Critic", "Summarizer"]
    assert store.messages(run_id)[6].meta["refines"] == store.messages(run_id)[4].id


def test_nested_phases_and_repeat(tmp_path: Path) -> None:
    policy = """
policy:
  type: phases
  repeat: true
  phases:
    - name: round
      mode: debate
      policy:
        type: phases
        phases:
          - {name: open, speakers: [Planner]}
          - {name: answer, speakers: [Analyst, Critic], mode: critique}
    - {name: wrap, speakers: [Summarizer]}
termination: {max_turns: 8}
"""
    store, run_id, _ = run_all(scenario(policy), tmp_path / "n.db")
    got = [(m.persona, m.phase, m.meta["mode"] if m.meta else None) for m in store.messages(run_id)]
    assert got == [
        ("Planner", "round/open", "debate"),
        ("Analyst", "round/answer", "critique"),  # the inner mode wins
        ("Critic", "round/answer", "critique"),
        ("Summarizer", "wrap", None),
        ("Planner", "round/open", "debate"),
        ("Analyst", "round/answer", "critique"),
        ("Critic", "round/answer", "critique"),
        ("Summarizer", "wrap", None),
    ]


def test_phase_config_errors() -> None:
    cases = [
        ("{type: phases, phases: [{name: a, speakers: [Planner], mode: critque}]}", "did you mean 'critique'"),
        (
            "{type: phases, phases: [{name: a, policy: {type: router}}, {name: b, speakers: [Critic]}]}",
            "phase 'a' never ends",
        ),
        ("{type: phases, phases: [{name: a, speakers: [Critic], policy: {type: router}}]}", "exactly one"),
        (
            "{type: phases, phases: [{name: a, rounds: 2, policy: {type: reflect, author: Planner, critic: Critic}}]}",
            "with `policy:` use `turns:`",
        ),
        (
            "{type: phases, phases: [{name: a, policy: {type: reflect, author: Planner, critic: Critik}}]}",
            "policy.phases[0].policy.critic",
        ),
    ]
    for policy, expected in cases:
        with pytest.raises(ConfigError) as caught:
            load_scenario_text(scenario(f"policy: {policy}\n"))
        assert expected in str(caught.value)


def test_the_example_scenario_validates_and_runs_all_four_phases(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = builtin_dir() / "scenarios" / "checkout-rollout.yaml"
    checked = subprocess.run(personae_cmd("validate", str(path)), env=cli_env, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    loaded = load_scenario(path)
    policy = loaded.scenario.policy
    assert [p.policy.type if p.policy else "speakers" for p in policy.phases] == [  # type: ignore[union-attr]
        "speakers", "router", "reflect", "speakers",
    ]
    assert all(p.mode for p in policy.phases)  # type: ignore[union-attr]

    def answer(request: ChatRequest) -> str:
        if request.schema and "next" in request.schema["properties"]:
            return json.dumps({"next": request.schema["properties"]["next"]["enum"][0], "reason": "r"})
        if request.schema and "decision" in request.schema["properties"]:  # the Summarizer's
            return json.dumps({"agreed": ["ship"], "still_open": [], "next_step": "QA owns the rollout",
                               "decision": "ship it to everyone"})
        if request.schema:
            return json.dumps({"approve": True, "issues": []})
        return "FINAL DECISION: ship it." if speaker_of(request) == "Summarizer" else "ok"

    store, run_id = run_to_end(tmp_path / "e.db", path, ScriptedBackend(default=answer))
    phases = [m.phase for m in store.messages(run_id)]
    assert [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]] == [
        "plan", "debate", None, "debate", "review", "conclude",  # None: the scripted User input
    ]
    assert store.run(run_id).stop_reason == "stop_phrase"


def test_a_run_that_max_turns_cuts_short_says_so_before_and_after(tmp_path: Path) -> None:
    from personae.orchestrator.shortfall import shortfall

    policy = (
        "policy:\n  type: phases\n  phases:\n    - {name: plan, speakers: [Planner]}\n"
        "    - {name: debate, speakers: [Critic, Planner], rounds: 2}\n"
        "    - {name: conclude, speakers: [Summarizer]}\n"
    )
    loaded = load_scenario_text(scenario(policy), base_dir=tmp_path)
    assert shortfall(loaded.scenario.policy, 6) is None  # 1 + 4 + 1 turns: enough
    cut = shortfall(loaded.scenario.policy, 5)
    assert cut is not None and (cut.phase, cut.needed, cut.starts) == ("conclude", 6, False)
    assert "before phase 'conclude'" in cut.message() and "to 6" in cut.message()
    inside = shortfall(loaded.scenario.policy, 3)
    assert inside is not None and (inside.phase, inside.starts) == ("debate", True)
    store, run_id, _ = run_all(scenario(policy), tmp_path / "c.db", max_turns=5)
    assert store.run(run_id).stop_reason == "max_turns (in phase conclude)"
