"""The LLM selector on the real embedded model: every chosen speaker is a roster name that the
transitions allow, read back from the database. (benchmarks/selector.py does 200 calls and prints
the share that needed the fallback; this keeps CI to about twenty.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personae.replies.structured import validate
from tests.durable_support import run_to_end

TRANSITIONS = {
    "Planner": ["Analyst", "Critic"],
    "Analyst": ["Critic", "Planner", "Summarizer"],
    "Critic": ["Planner", "Analyst"],
    "Summarizer": ["Planner", "Critic"],
}

SCENARIO = """
name: selector-real
goal: Decide whether the orders API needs a Redis cache.
guard: {enabled: false}
context: p99 latency is 900 ms against a 300 ms target; the database CPU is at 85%.
personas:
  - {name: Planner, description: Turns the discussion into steps., system: Propose a step., options: {num_predict: 8}}
  - {name: Analyst, description: Brings numbers., system: Give one number., options: {num_predict: 8}}
  - {name: Critic, description: Finds the biggest risk., system: Name a risk., options: {num_predict: 8}}
  - {name: Summarizer, description: Sums up., system: Sum up., options: {num_predict: 8}}
policy:
  type: router
  selector: llm
  default: Analyst
  rules:
    - {when: {contains: [FINAL]}, next: Summarizer}
  allowed_transitions:
    Planner: [Analyst, Critic]
    Analyst: [Critic, Planner, Summarizer]
    Critic: [Planner, Analyst]
    Summarizer: [Planner, Critic]
memory: {num_ctx: 2048, collapse: null}
termination: {max_turns: 20}
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 20 selections + 20 short turns; minutes on a 2-core machine under load
def test_every_chosen_speaker_is_allowed(tmp_path: Path) -> None:
    from personae.llm.embedded import EmbeddedBackend

    backend = EmbeddedBackend(num_ctx=2048)
    try:
        store, run_id = run_to_end(tmp_path / "sel.db", SCENARIO, backend, seed=11)
    finally:
        backend.close()

    messages = store.messages(run_id)
    selections = store.calls(run_id, purpose="select")
    assert store.run(run_id).stop_reason == "max_turns" and len(messages) == 20
    assert len(selections) >= 15  # every turn not decided by the (rare) FINAL rule
    previous = None
    for m in messages:
        allowed = list(TRANSITIONS) if previous is None else [n for n in TRANSITIONS[previous] if n != previous]
        assert m.persona in allowed, (m.turn, previous, m.persona)
        route = m.meta["route"]
        if route["by"] == "selector":
            assert isinstance(route["fallback"], bool) and isinstance(route["reason"], str)
        previous = m.persona
    by_turn = {m.turn: m for m in messages}
    for call in selections:
        message = by_turn[call.turn]
        assert call.message_id == message.id and message.meta["route"]["by"] == "selector"
        names = call.schema["properties"]["next"]["enum"]
        assert message.persona in names
        assert call.completion_tokens > 0 and call.prompt_tokens > 0
        if not message.meta["route"]["fallback"] and not message.meta["route"].get("partial"):
            answer = json.loads(call.response, strict=False)
            assert answer["next"] == message.persona
            assert validate(answer, call.schema) == []
