"""Collapse→rebuild on a scripted model: when collapses happen, what they store, how they fail
safely, and what the rebuilt prompts contain. The real model runs in test_collapse_long.py."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from personae.config import load_scenario_text
from personae.errors import BackendError
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.memory.view import MemoryView
from personae.orchestrator.collapse import Budget
from personae.orchestrator.run import Orchestrator, settings_for
from personae.orchestrator.state import Collapsed, TurnDone
from personae.store.repo import Store
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_events, start

WINDOW = 700  # whitespace tokens of the scripted backend


def scenario(extra: str = "", collapse: str = "{at_fraction: 0.6, keep_recent: 3, fan_in: 2, max_tokens: 200}",
             turns: int = 60) -> str:
    return make_scenario(
        name="collapse-test", goal="Decide on a cache for the orders API.",
        personas=roster(["Planner", "Critic", "Summarizer"], systems=TERSE, options="{num_predict: 40}"),
        extra=f"memory:\n  num_ctx: {WINDOW}\n  collapse: {collapse}\ntermination: {{max_turns: {turns}}}\n{extra}",
    )


def chatter(rng: random.Random, words: int = 30) -> str:
    return " ".join(f"w{rng.randint(0, 400)}" for _ in range(words)) + " latency is 900 ms."


def enum(schema: dict[str, Any], field: str, key: str) -> list[int]:
    props = schema["properties"][field]["items"]["properties"]
    return props[key]["items"]["enum"] if key in props else []


def summarizer(extra: Callable[[ChatRequest, dict[str, Any]], None] | None = None,
               rng: random.Random | None = None) -> Callable[[ChatRequest], str]:
    """Persona turns get chatter; collapse calls get a valid answer built from their schema."""
    rng = rng or random.Random(1)

    def reply(request: ChatRequest) -> str:
        if request.schema is None:
            return chatter(rng)
        answer: dict[str, Any] = {"summary": "They weighed a cache against the database load."}
        if "facts" in request.schema["properties"]:
            turns = enum(request.schema, "facts", "turns")
            answer |= {
                "facts": [{"text": f"Point made in turn {turns[0]}.", "turns": [turns[0]]}],
                "decisions": [],
                "open_questions": [{"text": f"What about turn {turns[-1]}?", "turns": [turns[-1]]}],
            }
            if extra:
                extra(request, answer)
            for name in ("facts", "decisions", "open_questions"):  # as many as the schema allows
                answer[name] = answer[name][: request.schema["properties"][name]["maxItems"]]
        return json.dumps(answer)

    return reply


def run(text: str, backend: ScriptedBackend, db: Path, **overrides: Any) -> tuple[Store, int, list]:
    return run_events(db, text, backend, **overrides)


def test_collapses_keep_every_prompt_inside_the_window_and_bounded(tmp_path: Path) -> None:
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, events = run(scenario(turns=90), backend, tmp_path / "c.db")
    collapsed = [e for e in events if isinstance(e, Collapsed)]
    assert len(collapsed) >= 5
    calls = store.calls(run_id)
    turns = [c for c in calls if c.purpose == "turn"]
    assert len(turns) == 90
    for call in calls:  # prompt plus the reply it may write fits the served window
        assert call.prompt_tokens + call.options["num_predict"] <= WINDOW
        assert call.options["num_ctx"] == WINDOW
    sizes = [c.prompt_tokens for c in turns]
    assert max(sizes[-30:]) <= max(sizes[:30])
    assert all("last_resort" not in e for c in turns for e in c.manifest)
    levels = {n.level for n in store.memory_nodes(run_id, ["summary"])}
    assert {1, 2} <= levels
    collapse_calls = store.calls(run_id, "collapse")
    assert collapse_calls and all(c.schema for c in collapse_calls)
    # The run's totals include the collapse calls.
    assert store.run(run_id).prompt_tokens == sum(c.prompt_tokens for c in calls)
    first = collapsed[0]
    assert first.tokens_after < first.tokens_before and first.mode == "model"
    assert first.new["summaries"] >= 1 and first.kept["facts"] >= 1
    # Collapse manifests point at rows: the messages collapsed, or the summaries merged up.
    summaries = {n.id: n for n in store.memory_nodes(run_id, ["summary"])}
    messages = {m.id for m in store.messages(run_id)}
    for call in collapse_calls:
        span = next(e for e in call.manifest if e["section"] == "span")
        level = next(e for e in call.manifest if e["section"] == "collapse")["level"]
        if level == 1:
            assert span["message_ids"] and set(span["message_ids"]) <= messages
        else:
            assert "node_keys" not in span and len(span["node_ids"]) > 2
            assert {summaries[i].level for i in span["node_ids"]} == {level - 1}


def test_the_live_output_marks_each_collapse() -> None:
    from personae.cli.live import collapsed_line as _collapsed_line

    event = Collapsed(turn=12, first=1, last=8, reason="at_fraction", tokens_before=1290,
                      tokens_after=640, kept={"summaries": 1, "facts": 3, "decisions": 0},
                      new={"summaries": 1, "level2": 1}, mode="fallback", seconds=2.5)
    line = _collapsed_line(event)
    assert "collapsed turns 1-8 (at_fraction)" in line and "1290 → 640 tokens" in line
    assert "1 summaries, 3 facts" in line and "level 2" in line and "fallback" in line


def test_the_memory_block_changes_only_at_a_collapse(tmp_path: Path) -> None:
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, events = run(scenario(turns=40), backend, tmp_path / "c.db")
    collapse_turns = {e.turn for e in events if isinstance(e, Collapsed)}
    turns = store.calls(run_id, "turn")
    for before, after in zip(turns, turns[1:]):
        same = before.prompt[0] == after.prompt[0]  # header + memory block: the system message
        assert same == ((after.turn - 1) not in collapse_turns), after.turn
    # Between collapses the transcript only grows at its end: the prompt prefix is reused.
    steady = [c for c in turns[1:] if (c.turn - 1) not in collapse_turns]
    assert sum(c.evaluated_tokens for c in steady) < sum(c.prompt_tokens for c in steady) / 2


def test_manifest_names_the_nodes_and_messages_of_every_section(tmp_path: Path) -> None:
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, _ = run(scenario(turns=30), backend, tmp_path / "c.db")
    last = store.calls(run_id, "turn")[-1]
    sections = {e["section"]: e for e in last.manifest}
    assert {"header", "memory/summaries", "memory/facts", "transcript", "persona"} <= set(sections)
    nodes = {n.id: n for n in store.memory_nodes(run_id)}
    for name, entry in sections.items():
        assert entry["tokens"] > 0
        if name.startswith("memory/"):
            assert entry["node_ids"] and all(i in nodes for i in entry["node_ids"])
            assert all(n in last.prompt[0]["content"] for n in (nodes[entry["node_ids"][0]].text,))
    messages = {m.id: m for m in store.messages(run_id)}
    shown = sections["transcript"]["message_ids"]
    assert [messages[i].turn for i in shown] == sections["transcript"]["turns"]
    assert shown and len(shown) < len(messages)
    collapse = store.calls(run_id, "collapse")[0]
    parts = {e["section"] for e in collapse.manifest}
    assert {"collapse", "header", "span", "memory/known"} <= parts


def test_invalid_answer_is_retried_once_with_the_reason_then_accepted(tmp_path: Path) -> None:
    state = {"first": True}
    good = summarizer()

    def reply(request: ChatRequest) -> str:
        if request.schema is not None and state["first"]:
            state["first"] = False
            return '{"summary": "cut off'
        return good(request)

    backend = ScriptedBackend(default=reply, num_ctx=WINDOW)
    store, run_id, events = run(scenario(turns=14), backend, tmp_path / "c.db")
    first = next(e for e in events if isinstance(e, Collapsed))
    assert first.mode == "retried"
    calls = store.calls(run_id, "collapse")
    assert calls[0].error and calls[0].error.startswith("rejected:")
    assert "previous answer was rejected" in calls[1].prompt[-1]["content"]
    assert calls[1].error is None


def test_model_that_never_answers_right_falls_back_to_extraction(tmp_path: Path) -> None:
    rng = random.Random(3)

    def reply(request: ChatRequest) -> str:
        if request.schema is not None:
            return "I think the summary is that we talked."
        return chatter(rng) + " We decided to add Redis. Is the TTL right?"

    backend = ScriptedBackend(default=reply, num_ctx=WINDOW)
    store, run_id, events = run(scenario(turns=40), backend, tmp_path / "c.db")
    collapsed = [e for e in events if isinstance(e, Collapsed)]
    assert collapsed and all(e.mode == "fallback" for e in collapsed)
    assert len([e for e in events if isinstance(e, TurnDone)]) == 40  # the run went on
    calls = store.calls(run_id, "collapse")
    assert len(calls) == 2 * len([n for n in store.memory_nodes(run_id, ["summary"])])
    summary = store.memory_nodes(run_id, ["summary"])[0]
    assert summary.data["mode"] == "fallback" and "(turn 1)" in summary.text
    kinds = {n.kind for n in store.memory_nodes(run_id, ["fact", "decision", "question"])}
    assert kinds == {"fact", "decision"}  # max_tokens 200 leaves no room for a question


def test_extractive_collapse_is_deterministic_and_cites_its_turns() -> None:
    from personae.memory.items import Limits, Source, extractive

    sources = [
        Source((4,), "Analyst", "Reads are 80% of 1,200 rps. So what? We decided to add Redis."),
        Source((5,), "Critic", "Is a 60 s TTL safe for order status? Stale reads hurt."),
    ]
    limits = Limits(200, 80, 2, 1, 1)
    output = extractive(sources, limits)
    assert output == extractive(sources, limits)
    assert output.summary.startswith("Analyst (turn 4): Reads are 80% of 1,200 rps.")
    assert [(i.text, i.turns) for i in output.facts] == [("Reads are 80% of 1,200 rps.", [4])]
    assert [i.text for i in output.decisions] == ["We decided to add Redis."]
    assert [(i.text, i.turns) for i in output.open_questions] == [("So what?", [4])]


def test_backend_error_during_a_collapse_does_not_stop_the_run(tmp_path: Path) -> None:
    good = summarizer()
    failures = {"left": 1}

    def reply(request: ChatRequest) -> str:
        if request.schema is not None and failures["left"]:
            failures["left"] -= 1
            raise BackendError("connection refused")
        return good(request)

    backend = ScriptedBackend(default=reply, num_ctx=WINDOW)
    store, run_id, events = run(scenario(turns=20), backend, tmp_path / "c.db")
    assert store.run(run_id).status == "completed"
    first = next(e for e in events if isinstance(e, Collapsed))
    assert first.mode == "fallback"
    assert "connection refused" in store.calls(run_id, "collapse")[0].error


def test_pinned_inputs_are_facts_in_every_rebuilt_prompt(tmp_path: Path) -> None:
    inputs = """inputs:
  - {at_turn: 3, text: "Budget is capped at 2,000 EUR a month.", pin: true}
  - {at_turn: 20, text: "Finish before the November freeze.", pin: true}
  - {at_turn: 21, text: "Just a remark, not pinned."}
"""
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, _ = run(scenario(inputs, turns=50), backend, tmp_path / "c.db")
    pinned = [n for n in store.memory_nodes(run_id, ["fact"]) if n.data.get("pinned")]
    assert [n.text for n in pinned] == [
        "Budget is capped at 2,000 EUR a month.", "Finish before the November freeze."
    ]
    edges = store.memory_edges(run_id, ["derived_from"])
    messages = {m.turn: m for m in store.messages(run_id)}
    for node in pinned:
        assert node.valid_from == node.turn and messages[node.turn].persona == "User"
        assert any(e.src == node.id for e in edges)
    final = store.calls(run_id, "turn")[-1]
    block = next(e for e in final.manifest if e["section"] == "memory/pinned")
    assert block["node_ids"] == [n.id for n in pinned]
    for node in pinned:
        assert node.text in final.prompt[0]["content"]


def test_no_fact_disappears_without_a_supersedes_or_contradicts_edge(tmp_path: Path) -> None:
    def revise(request: ChatRequest, answer: dict[str, Any]) -> None:
        known = enum(request.schema, "facts", "supersedes")
        if known:  # replace the oldest item it was shown, and contradict the next
            answer["facts"][0]["supersedes"] = [known[0]]
        decision: dict[str, Any] = {"text": "Use a 60 s TTL.", "turns": answer["facts"][0]["turns"]}
        if len(known) > 1:
            decision["contradicts"] = [known[1]]
        answer["decisions"] = [decision]  # every collapse adds two items, so two can be shown

    backend = ScriptedBackend(default=summarizer(revise), num_ctx=WINDOW)
    store, run_id, _ = run(scenario(turns=60), backend, tmp_path / "c.db")
    view = MemoryView.load(store, run_id)
    marks = view.collapses()
    assert len(marks) >= 5
    revised = store.memory_edges(run_id, ["supersedes", "contradicts"])
    assert {e.kind for e in revised} == {"supersedes", "contradicts"}
    explained = {e.dst for e in revised}
    for earlier, later in zip(marks, marks[1:]):
        before = {n.id for n in view.items(earlier.turn)}
        after = {n.id for n in view.items(later.turn)}
        assert before - after <= explained
    for node in store.memory_nodes(run_id, ["fact", "decision", "question"]):
        assert (node.valid_to is not None) == (node.id in explained)


def test_restated_items_become_support_not_duplicates(tmp_path: Path) -> None:
    def restate(request: ChatRequest, answer: dict[str, Any]) -> None:
        turns = enum(request.schema, "facts", "turns")
        answer["facts"] = [{"text": "Latency is 900 ms.", "turns": [turns[0]]}]

    backend = ScriptedBackend(default=summarizer(restate), num_ctx=WINDOW)
    store, run_id, _ = run(scenario(turns=40), backend, tmp_path / "c.db")
    facts = [n for n in store.memory_nodes(run_id, ["fact"]) if n.text == "Latency is 900 ms."]
    assert len(facts) == 1
    supports = [e for e in store.memory_edges(run_id, ["supports"]) if e.dst == facts[0].id]
    assert len(supports) >= 3


def test_a_span_too_long_for_one_call_is_collapsed_in_chunks(tmp_path: Path) -> None:
    rng = random.Random(5)
    good = summarizer()

    def reply(request: ChatRequest) -> str:
        return chatter(rng, 200) if request.schema is None else good(request)

    # Replies far longer than num_predict: four of them are more than one collapse call holds.
    text = scenario(collapse="{at_fraction: 0.9, keep_recent: 0, fan_in: 8, max_tokens: 120}",
                    turns=12).replace(f"num_ctx: {WINDOW}", "num_ctx: 900")
    backend = ScriptedBackend(default=reply, num_ctx=900)
    store, run_id, events = run(text, backend, tmp_path / "c.db")
    collapsed = [e for e in events if isinstance(e, Collapsed)]
    assert any(e.new["summaries"] > 1 for e in collapsed)
    for call in store.calls(run_id, "collapse"):
        assert call.prompt_tokens + call.options["num_predict"] <= 900
    assert all(c.prompt_tokens + 40 <= 900 for c in store.calls(run_id, "turn"))


def test_every_turns_and_phase_end_trigger_collapses(tmp_path: Path) -> None:
    every = scenario(collapse="{at_fraction: 0.95, keep_recent: 1, every_turns: 5}", turns=16)
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    _, _, events = run(every, backend, tmp_path / "e.db")
    assert [e.turn for e in events if isinstance(e, Collapsed)] == [5, 10, 15]
    assert {e.reason for e in events if isinstance(e, Collapsed)} == {"every_turns"}

    phases = scenario(
        """policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planner], rounds: 3}
    - {name: debate, speakers: [Critic, Planner], rounds: 2}
    - {name: conclude, speakers: [Summarizer]}
""",
        collapse="{at_fraction: 0.95, keep_recent: 1, on_phase_end: true}",
    )
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    _, _, events = run(phases, backend, tmp_path / "p.db")
    marks = [(e.turn, e.reason) for e in events if isinstance(e, Collapsed)]
    assert marks == [(3, "phase_end"), (7, "phase_end")]


def test_resume_rebuilds_the_same_memory_from_the_database(tmp_path: Path) -> None:
    text = scenario(turns=60)
    db = tmp_path / "r.db"
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, _ = run(text, backend, db, max_turns=33)
    loaded = load_scenario_text(text, base_dir=tmp_path)
    settings = settings_for(loaded, backend, max_turns=33)
    first = Orchestrator(loaded, backend, store, settings)
    fresh = Orchestrator(loaded, backend, Store.open(db), settings)
    from personae.orchestrator.run import load_history
    from personae.orchestrator.state import RunState, TurnPlan

    state = RunState(run_id, tuple(load_history(store, run_id)))
    speaker = TurnPlan("Critic")
    assert fresh._prompt(state, speaker).messages == first._prompt(state, speaker).messages
    assert fresh.collapser.trigger(state) == first.collapser.trigger(state)
    # Continuing the run goes on collapsing where it left off.
    settings = settings_for(loaded, backend, max_turns=60)
    store.finish_run(run_id, "interrupted")
    events = list(Orchestrator(loaded, backend, store, settings).run(run_id))
    later = [e for e in events if isinstance(e, Collapsed)]
    assert later and later[0].first == MemoryView.load(store, run_id).collapses()[len(
        MemoryView.load(store, run_id).collapses()) - len(later)].first
    assert [m.turn for m in store.messages(run_id)] == list(range(1, 61))


def test_collapse_off_keeps_the_old_truncation_and_records_it(tmp_path: Path) -> None:
    text = scenario(turns=30).replace(
        "collapse: {at_fraction: 0.6, keep_recent: 3, fan_in: 2, max_tokens: 200}", "collapse: null"
    )
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, events = run(text, backend, tmp_path / "n.db")
    assert not [e for e in events if isinstance(e, Collapsed)]
    last = store.calls(run_id, "turn")[-1]
    transcript = next(e for e in last.manifest if e["section"] == "transcript")
    assert transcript["last_resort"] and transcript["dropped_turns"][0] == 1
    assert last.prompt_tokens + 40 <= WINDOW


def test_budget_derives_from_the_window() -> None:
    budget = Budget.derive(2048, 48, 0.6, 300)
    assert (budget.limit, budget.trigger) == (2000, 1228)
    assert 300 < budget.memory < 1228 - 300
    assert Budget.derive(2048, 1900, 0.6, 100).trigger == 148  # never above window - reply


@pytest.mark.parametrize("max_tokens", [64, 160, 320, 1000])
def test_answer_sizes_fit_the_reply_budget(max_tokens: int) -> None:
    from personae.memory.items import Limits

    limits = Limits.for_tokens(max_tokens)
    longest = limits.summary_chars + (limits.facts + limits.decisions + limits.questions) * (
        limits.item_chars + 40
    )
    assert longest <= max(max_tokens * 3 * 1.6, 600)


def test_prompts_do_not_depend_on_what_else_the_database_holds(tmp_path: Path) -> None:
    """Replay re-executes a run in a scratch database: every prompt must hash the same there."""
    def revise(request: ChatRequest, answer: dict[str, Any]) -> None:
        known = enum(request.schema, "facts", "supersedes")
        if known:
            answer["facts"][0]["supersedes"] = [known[-1]]

    def calls(db: Path, before: int) -> list[tuple[str, str]]:
        for _ in range(before):  # other runs first: node and message ids shift
            run(scenario(turns=12), ScriptedBackend(default=summarizer(revise), num_ctx=WINDOW), db)
        backend = ScriptedBackend(default=summarizer(revise, random.Random(9)), num_ctx=WINDOW)
        store, run_id, _ = run(scenario(turns=40), backend, db)
        return [(c.purpose, c.prompt_hash) for c in store.calls(run_id)]

    crowded, alone = calls(tmp_path / "a.db", 2), calls(tmp_path / "b.db", 0)
    assert sum(p == "collapse" for p, _ in alone) >= 4
    assert crowded == alone


def test_a_tight_window_keeps_fewer_recent_turns_instead_of_collapsing_every_turn(
    tmp_path: Path,
) -> None:
    text = scenario(collapse="{at_fraction: 0.6, keep_recent: 4, max_tokens: 120}", turns=40)
    text = text.replace(f"num_ctx: {WINDOW}", "num_ctx: 520")
    backend = ScriptedBackend(default=summarizer(), num_ctx=520)
    store, run_id, events = run(text, backend, tmp_path / "t.db")
    turns = [e.turn for e in events if isinstance(e, Collapsed)]
    assert len(turns) >= 4
    assert all(b - a >= 2 for a, b in zip(turns, turns[1:]))  # room to grow after each
    calls = store.calls(run_id, "turn")
    assert all(not e.get("last_resort") for c in calls for e in c.manifest)
    assert all(c.prompt_tokens + 40 <= 520 for c in calls)


STRUCTURED = """
personas:
  - {name: Planner, description: plans, system: Plan., options: {num_predict: 40}}
  - {name: Critic, description: flaws, system: Attack., options: {num_predict: 40}}
  - name: Summarizer
    description: sums up
    system: Sum up.
    options: {num_predict: 40}
    output_schema:
      type: object
      properties:
        summary:
          type: string
          description: one paragraph on what was agreed, what is still open, and the next step
            the team takes, with every number that was given and who gave it, in plain words
      required: [summary]
"""


@pytest.mark.parametrize("measure_prepared", [True, False])
def test_collapse_measures_a_structured_turn_as_it_is_sent(
    tmp_path: Path, measure_prepared: bool
) -> None:
    """A structured reply's prompt carries its schema hint; the collapse check measures that
    prompt, so no turn's prompt passes the trigger. Runs started before 0.2.1 measured it
    without the hint (and resume so): a structured turn then went past by up to the hint."""
    plain = scenario(turns=90)  # the same run, with a Summarizer that answers under a schema
    personas = plain[plain.index("personas:"):plain.index("memory:")]
    text = plain.replace(personas, STRUCTURED.lstrip("\n"))
    backend = ScriptedBackend(default=summarizer(), num_ctx=WINDOW)
    store, run_id, orchestrator = start(
        tmp_path / "s.db", text, backend, measure_prepared=measure_prepared
    )
    list(orchestrator.run(run_id))
    assert orchestrator.collapser is not None
    trigger = orchestrator.collapser.budget.trigger
    turns = store.calls(run_id, "turn")
    assert len(turns) == 90 and any(c.schema for c in turns)
    within = all(c.prompt_tokens <= trigger for c in turns)
    assert within is measure_prepared
