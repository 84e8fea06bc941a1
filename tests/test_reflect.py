"""The reflect policy: draft, verdict, revision ... until approval or max_rounds, in order, with the
verdict stored as structured data and each revision linked to the draft it revises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personae.replies.structured import validate
from personae.config import load_scenario_text
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.verdicts import VERDICT_SCHEMA
from tests.builders import make_scenario, roster
from tests.durable_support import run_to_end

PERSONAS = roster(
    ["Planner", "Critic"],
    systems={"Planner": "Write a plan.", "Critic": "Review strictly."},
    descriptions={"Planner": "Writes the plan.", "Critic": "Reviews it."},
)


def scenario(max_rounds: int = 3, extra: str = "") -> str:
    return make_scenario(
        f"policy: {{type: reflect, author: Planner, critic: Critic, max_rounds: {max_rounds}}}\n",
        name="reflect-test", goal="A rollout plan for the cache.", personas=PERSONAS,
        extra=f"termination: {{max_turns: 50}}\n{extra}",
    )


def scripted(verdicts: list[dict]) -> ScriptedBackend:
    verdict_queue = [json.dumps(v) for v in verdicts]
    drafts = iter(f"Plan v{i}: step {i}." for i in range(1, 100))

    def reply(request: ChatRequest) -> str:
        return verdict_queue.pop(0) if request.schema is not None else next(drafts)

    return ScriptedBackend(default=reply)


def test_reflect_ends_when_the_critic_approves(tmp_path: Path) -> None:
    backend = scripted(
        [{"approve": False, "issues": ["No owner.", "No date."]}, {"approve": True, "issues": []}]
    )
    # the cache-friendly layout, whose transcript re-renders each turn's cue word for word
    store, run_id = run_to_end(tmp_path / "a.db", scenario(extra="layout: cache_friendly\n"), backend)
    messages = store.messages(run_id)
    roles = [(m.persona, m.meta["reflect"], m.meta["round"]) for m in messages]
    assert roles == [
        ("Planner", "draft", 1),
        ("Critic", "verdict", 1),
        ("Planner", "revision", 2),
        ("Critic", "verdict", 2),
    ]
    draft, verdict, revision, approval = messages
    assert verdict.structured == {"approve": False, "issues": ["No owner.", "No date."]}
    assert verdict.content == "Not approved. Issues to fix:\n- No owner.\n- No date."
    assert approval.structured == {"approve": True, "issues": []} and approval.content == "Approved."
    # links for the memory graph: revision refines the draft; verdicts say what they review
    assert revision.meta["refines"] == draft.id
    assert verdict.meta["reviews"] == draft.id and approval.meta["reviews"] == revision.id
    assert store.run(run_id).stop_reason == "approved"
    # the verdicts were asked for under the verdict schema, and the author saw the issues
    verdict_calls = [c for c in store.calls(run_id) if c.schema is not None]
    assert [c.turn for c in verdict_calls] == [2, 4] and verdict_calls[0].schema == VERDICT_SCHEMA
    *_, verdict_cue, verdict_said, revision_cue = backend.requests[2].messages
    assert verdict_said.role == "assistant" and verdict_said.content.startswith(
        "Not approved. Issues to fix:\n- No owner."
    )
    assert "Revise your latest draft" in revision_cue.content
    asked = backend.requests[1].messages[-1].content
    assert "approve (true or false), issues (a list of strings)" in asked
    # the Critic's turn is re-rendered with the cue it was asked with, word for word
    assert verdict_cue.content == asked and verdict.meta["instructions"] in asked


def test_reflect_stops_at_max_rounds_without_approval(tmp_path: Path) -> None:
    backend = scripted([{"approve": False, "issues": [f"issue {i}"]} for i in range(5)])
    store, run_id = run_to_end(tmp_path / "m.db", scenario(max_rounds=3), backend)
    messages = store.messages(run_id)
    assert [m.meta["reflect"] for m in messages] == [
        "draft", "verdict", "revision", "verdict", "revision", "verdict",
    ]
    assert [m.content for m in messages if m.persona == "Planner"] == [
        "Plan v1: step 1.", "Plan v2: step 2.", "Plan v3: step 3.",
    ]
    # every revision refines the text just before its verdict
    ids = [m.id for m in messages]
    assert [m.meta.get("refines") for m in messages if m.meta["reflect"] == "revision"] == [ids[0], ids[2]]
    assert store.run(run_id).stop_reason == "max_rounds"


def test_an_unreadable_verdict_counts_as_a_rejection(tmp_path: Path) -> None:
    replies = iter(["Draft.", '{"approve": "yes"}', "Better draft.", json.dumps({"approve": True, "issues": []})])
    backend = ScriptedBackend(default=lambda request: next(replies))
    store, run_id = run_to_end(tmp_path / "u.db", scenario(max_rounds=2), backend)
    messages = store.messages(run_id)
    bad = messages[1]
    assert bad.structured is None and bad.content == '{"approve": "yes"}'
    assert bad.meta["structured_error"] == (
        "$: missing required field 'issues'; $.approve: expected boolean, got string"
    )
    assert [m.meta["reflect"] for m in messages] == ["draft", "verdict", "revision", "verdict"]
    assert store.run(run_id).stop_reason == "approved"


def test_reflect_config_errors() -> None:
    from personae.errors import ConfigError

    with pytest.raises(ConfigError, match="author and the critic must be different"):
        load_scenario_text(scenario().replace("author: Planner", "author: Critic"))
    with pytest.raises(ConfigError, match="did you mean 'Critic'"):
        load_scenario_text(scenario().replace("critic: Critic", "critic: Critik"))


@pytest.mark.slow
@pytest.mark.timeout(1200)  # four short turns; minutes on a shared 2-core machine
def test_reflect_on_the_real_model(tmp_path: Path) -> None:
    from personae.llm.embedded import EmbeddedBackend

    personas = """
personas:
  - {name: Planner, description: Writes the plan., system: Write a three-step rollout plan.,
     options: {num_predict: 40, temperature: 0.3}}
  - {name: Critic, description: Reviews it., system: Check the plan has owners and dates.,
     options: {num_predict: 160, temperature: 0.3}}
"""
    text = scenario(max_rounds=2).replace(PERSONAS, personas) + "memory: {num_ctx: 2048, collapse: null}\n"
    backend = EmbeddedBackend(num_ctx=2048)
    try:
        store, run_id = run_to_end(tmp_path / "real.db", text, backend, seed=3)
    finally:
        backend.close()
    messages = store.messages(run_id)
    run = store.run(run_id)
    roles = [m.meta["reflect"] for m in messages]
    assert run.stop_reason in ("approved", "max_rounds")
    assert roles == ["draft", "verdict", "revision", "verdict"][: len(roles)] and len(roles) in (2, 4)
    verdicts = [m for m in messages if m.meta["reflect"] == "verdict"]
    for verdict in verdicts:  # constrained decoding: always a valid verdict
        assert verdict.structured is not None, verdict.meta
        assert validate(verdict.structured, VERDICT_SCHEMA) == []
    assert (run.stop_reason == "approved") == (verdicts[-1].structured["approve"] is True)
    if len(roles) == 4:
        assert messages[2].meta["refines"] == messages[0].id
