"""The run loop on a scripted model: turn order, what went into each prompt, what was stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from personae.errors import BackendError
from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.state import Stopped, TurnDone, TurnStarted
from tests.builders import make_scenario, roster
from tests.durable_support import run_events, start

PERSONAS = roster()


def scenario(extra: str = "", personas: str = PERSONAS) -> str:
    return make_scenario(extra, context="p99 is 900 ms.", personas=personas)


def test_round_robin_order_and_max_turns(tmp_path: Path) -> None:
    backend = ScriptedBackend(default="A point.")
    store, run_id, events = run_events(tmp_path / "t.db", scenario("termination: {max_turns: 6}\n"), backend)
    started = [e.persona for e in events if isinstance(e, TurnStarted)]
    assert started == ["Planner", "Analyst", "Critic", "Summarizer", "Planner", "Analyst"]
    assert isinstance(events[-1], Stopped) and events[-1].reason == "max_turns"
    run = store.run(run_id)
    assert (run.status, run.stop_reason, run.turns) == ("completed", "max_turns", 6)
    assert [m.turn for m in store.messages(run_id)] == [1, 2, 3, 4, 5, 6]


def test_phases_policy_and_completion(tmp_path: Path) -> None:
    policy = """
policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planner]}
    - {name: debate, speakers: [Analyst, Critic], rounds: 2}
    - {name: conclude, speakers: [Summarizer]}
termination: {max_turns: 50}
"""
    store, run_id, events = run_events(tmp_path / "t.db", scenario(policy), ScriptedBackend())
    said = [(m.persona, m.phase) for m in store.messages(run_id)]
    assert said == [
        ("Planner", "plan"), ("Analyst", "debate"), ("Critic", "debate"),
        ("Analyst", "debate"), ("Critic", "debate"), ("Summarizer", "conclude"),
    ]
    assert store.run(run_id).stop_reason == "phases_complete"


def test_stop_phrase_ends_the_run(tmp_path: Path) -> None:
    backend = ScriptedBackend(["one", "two", "FINAL DECISION: cache it", "never"])
    store, run_id, _ = run_events(
        tmp_path / "t.db", scenario('termination: {max_turns: 10, stop_phrase: "FINAL DECISION:"}\n'), backend
    )
    assert store.run(run_id).stop_reason == "stop_phrase"
    assert len(store.messages(run_id)) == 3


def test_prompt_holds_goal_transcript_and_speaker_last(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Plan: cache reads.", "Hit rate 80%.", "Risk: stale data."])
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 3}\n"), backend, layout="cache_friendly")
    third = backend.requests[2]
    roles = [m.role for m in third.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    system = third.messages[0].content
    assert "Decide on a cache." in system
    # every participant's instructions are in the stable header, read once per run
    assert "## Critic" in system and "Attack the weakest claim." in system and "Plan concretely." in system
    cues = [m.content for m in third.messages if m.role == "user"]
    assert cues == [
        "It is your turn. You are Planner.",
        "It is your turn. You are Analyst.",
        "It is your turn. You are Critic.",
    ]
    replies = [m.content for m in third.messages if m.role == "assistant"]
    assert replies == ["Plan: cache reads.", "Hit rate 80%."]
    assert third.options["num_ctx"] == 4096 and third.options["num_predict"] == 200


def test_cache_friendly_prompt_extends_the_previous_prompt_and_reply(tmp_path: Path) -> None:
    """The property the layout exists for: call k+1 = call k + its reply + one new cue, so a
    server's prefix cache re-reads only the new cue."""
    replies = ["Plan: cache reads.", "Hit rate 80%.", "Risk: stale data.", "Summary."]
    backend = ScriptedBackend(list(replies))
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 4}\n"), backend, layout="cache_friendly")
    prompts = [r.messages for r in backend.requests]
    for before, reply, after in zip(prompts, replies, prompts[1:]):
        assert after[: len(before)] == before
        assert after[len(before)] == ChatMessage("assistant", reply)
        assert len(after) == len(before) + 2 and after[-1].role == "user"


def test_classic_prompt_puts_the_speaker_first(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Plan: cache reads.", "Hit rate 80%.", "Risk: stale data."])
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 3}\n"), backend, layout="classic")
    system, user = backend.requests[2].messages
    assert system.role == "system" and system.content.startswith("Attack the weakest claim.")
    assert "Decide on a cache." in system.content and "Plan concretely." not in system.content
    assert "Planner: Plan: cache reads." in user.content and "Analyst: Hit rate 80%." in user.content
    assert user.content.rstrip().endswith("without a name prefix.")


def test_cache_friendly_prefix_is_stable_classic_is_not(tmp_path: Path) -> None:
    evaluated = {}
    for layout in ("cache_friendly", "classic"):
        backend = ScriptedBackend(default="word " * 30)
        store, run_id, _ = run_events(
            tmp_path / f"{layout}.db", scenario("termination: {max_turns: 8}\n"), backend, layout=layout
        )
        calls = store.calls(run_id)
        later = calls[2:]
        evaluated[layout] = sum(c.evaluated_tokens for c in later)
        if layout == "cache_friendly":
            assert all(c.evaluated_tokens < c.prompt_tokens / 2 for c in later)
        else:
            assert all(c.evaluated_tokens > c.prompt_tokens * 0.8 for c in later)
    assert evaluated["classic"] > 3 * evaluated["cache_friendly"]


def test_every_call_is_a_row_with_manifest(tmp_path: Path) -> None:
    backend = ScriptedBackend(["<thinking>secret</thinking>Visible.", "Next.\nCritic: fake line"])
    store, run_id, _ = run_events(tmp_path / "t.db", scenario("termination: {max_turns: 2}\n"), backend)
    messages = store.messages(run_id)
    assert messages[0].content == "Visible." and messages[0].thinking == "secret"
    assert messages[1].cut == "Critic: fake line" and messages[1].content == "Next."
    calls = store.calls(run_id)
    assert [c.purpose for c in calls] == ["turn", "turn"]
    assert calls[1].message_id == messages[1].id
    sections = {s["section"]: s for s in calls[1].manifest}
    assert sections["transcript"]["message_ids"] == [messages[0].id]
    assert sections["persona"]["persona"] == "Analyst"
    # Hidden thinking never reaches another persona's prompt.
    assert "secret" not in json.dumps(calls[1].prompt)
    run = store.run(run_id)
    assert run.prompt_tokens == sum(c.prompt_tokens for c in calls)
    assert run.evaluated_tokens == sum(c.evaluated_tokens for c in calls)
    # Users can read it all with plain SQL.
    rows = sqlite3.connect(tmp_path / "t.db").execute(
        "select persona, count(*) from messages group by 1 order by 1"
    ).fetchall()
    assert rows == [("Analyst", 1), ("Planner", 1)]


def test_visible_thinking_is_shown_to_others(tmp_path: Path) -> None:
    personas = PERSONAS.replace("system: Plan concretely.}", "system: Plan concretely., thinking: visible}")
    backend = ScriptedBackend(["<thinking>why</thinking>Plan."])
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 2}\n", personas), backend)
    assert "<thinking>why</thinking>\nPlan." in "\n".join(m.content for m in backend.requests[1].messages)


def test_seed_is_sent_and_varies_per_turn(tmp_path: Path) -> None:
    backend = ScriptedBackend()
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 2}\n"), backend, seed=7)
    assert [r.options["seed"] for r in backend.requests] == [8, 9]


def test_oldest_turns_are_dropped_when_the_window_is_full(tmp_path: Path) -> None:
    backend = ScriptedBackend(default="word " * 100, num_ctx=700)
    store, run_id, _ = run_events(
        tmp_path / "t.db", scenario("memory: {num_ctx: 700, collapse: null}\ntermination: {max_turns: 12}\n"), backend
    )
    calls = store.calls(run_id)
    assert max(c.prompt_tokens for c in calls) <= 700 - 200
    assert "dropped_turns" in {k for s in calls[-1].manifest for k in s}


def test_trimming_drops_whole_turns_with_the_user_lines_before_them(tmp_path: Path) -> None:
    """Dropped or not, a cache-friendly prompt stays system, then user/assistant pairs, then
    the cue; a User line is dropped together with the turn it preceded, never split off."""
    inputs = "inputs:\n" + "".join(f"  - {{at_turn: {t}, text: Note {t}.}}\n" for t in (2, 5, 6, 9))
    backend = ScriptedBackend(default="word " * 60, num_ctx=700)
    text = scenario(f"memory: {{num_ctx: 700, collapse: null}}\ntermination: {{max_turns: 12}}\n{inputs}")
    store, run_id, _ = run_events(tmp_path / "t.db", text, backend, layout="cache_friendly")
    calls = store.calls(run_id)
    assert any("dropped_turns" in s for c in calls for s in c.manifest)
    for request, call in zip(backend.requests, calls):
        roles = [m.role for m in request.messages]
        assert roles[0] == "system" and roles[-1] == "user"
        assert roles[1:] == ["user", "assistant"] * ((len(roles) - 2) // 2) + ["user"]
        transcript = next(s for s in call.manifest if s["section"] == "transcript")
        shown = "\n".join(m.content for m in request.messages)
        for message in store.messages(run_id):
            if message.persona == "User" and message.turn in transcript["turns"]:
                assert message.content in shown
            elif message.persona == "User":
                assert message.content not in shown
    assert max(c.prompt_tokens for c in calls) <= 700 - 200


def test_backend_failure_marks_run_failed_and_keeps_turns(tmp_path: Path) -> None:
    def boom(_: ChatRequest) -> str:
        raise BackendError("server went away", transient=True)

    backend = ScriptedBackend(["one", "two", boom])
    store, run_id, orchestrator = start(tmp_path / "t.db", scenario("termination: {max_turns: 5}\n"), backend)
    with pytest.raises(BackendError):
        for _ in orchestrator.run(run_id):
            pass
    run = store.run(run_id)
    assert run.status == "failed" and "server went away" in (run.error or "")
    assert len(store.messages(run_id)) == 2
    assert store.calls(run_id)[-1].error == "server went away"


def test_turn_done_events_carry_usage(tmp_path: Path) -> None:
    _, _, events = run_events(tmp_path / "t.db", scenario("termination: {max_turns: 2}\n"), ScriptedBackend())
    done = [e for e in events if isinstance(e, TurnDone)]
    assert len(done) == 2 and all(e.usage.prompt_tokens > 0 for e in done)


@pytest.mark.parametrize("layout", ["transcript", "named"])
def test_speaker_last_layouts_end_with_the_speaker_and_show_turns_as_named_text(
    tmp_path: Path, layout: str
) -> None:
    replies = ["Plan: cache reads.", "Hit rate 80%.", "Risk: stale data.", "Summary."]
    backend = ScriptedBackend(list(replies))
    run_events(tmp_path / "t.db", scenario("termination: {max_turns: 4}\n"), backend, layout=layout)
    prompts = [r.messages for r in backend.requests]
    for prompt in prompts:
        assert prompt[0].role == "system" and "Decide on a cache." in prompt[0].content
        assert all(m.role != "assistant" for m in prompt)  # nobody's turn reads as the model's own
    third = prompts[2]
    last = third[-1].content
    cue = last[last.rindex("Now it is Critic's turn."):]  # the end of the prompt
    assert "Attack the weakest claim." in cue and "Goal: Decide on a cache." in cue
    assert "Hit rate 80%." not in cue
    assert "Plan concretely." not in cue  # only the speaker's instructions
    text = "\n".join(m.content for m in third)
    assert "Planner: Plan: cache reads." in text and "Analyst: Hit rate 80%." in text
    # Each prompt extends the previous one up to the end of its transcript: the cue goes, the
    # reply comes as named text, then the new cue.
    for k, (before, after) in enumerate(zip(prompts, prompts[1:])):
        if layout == "named":
            assert after[: len(before) - 1] == before[:-1]
            assert after[len(before) - 1].content.endswith(replies[k])
            assert len(after) == len(before) + 1
        else:
            kept = before[1].content[: before[1].content.rindex("Now it is ")]
            assert len(after) == 2 and after[1].content.startswith(kept)
            assert replies[k] in after[1].content[len(kept):]
    assert backend.requests[0].options["stop"]  # other speakers' tags still stop a reply


def test_speaker_last_layouts_cost_about_a_reply_and_a_cue_per_turn(tmp_path: Path) -> None:
    """The price of showing replies as text: the server re-reads the last reply and the new cue,
    never the whole transcript (linear in turns, unlike classic)."""
    evaluated = {}
    for layout in ("transcript", "classic"):
        backend = ScriptedBackend(default="word " * 30)
        store, run_id, _ = run_events(
            tmp_path / f"{layout}.db", scenario("termination: {max_turns: 12}\n"), backend, layout=layout
        )
        calls = store.calls(run_id)
        evaluated[layout] = sum(c.evaluated_tokens for c in calls[2:])
        if layout == "transcript":
            last = [c.prompt[-1]["content"] for c in calls]
            cue = max(len(text[text.rindex("Now it is "):].split()) for text in last)
            assert all(c.evaluated_tokens <= 30 + cue + 10 for c in calls[1:])
    assert evaluated["classic"] > 3 * evaluated["transcript"]
