"""The reply guard on a scripted model: a bad reply is asked for again, every attempt is a stored
model call, the message says which attempt was kept and why the others were rejected."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.state import Retrying, TurnDone
from tests.durable_support import run_events

SCENARIO = """name: guard-test
goal: Decide whether the orders API needs a Redis cache.
context: p99 latency is 900 ms at 1,200 requests per second.
personas:
  - {name: Planner, description: plans, system: Plan concretely., options: {seed: 5}}
  - {name: Critic, description: finds flaws, system: Attack the weakest claim.}
termination: {max_turns: 2}
"""
FIRST = "Put a Redis cache in front of order reads and expire entries after thirty seconds."
NEW = "Stale orders after a refund are the risk; measure how often an order changes in a minute."


def test_a_copy_is_retried_and_both_calls_are_stored(tmp_path: Path) -> None:
    backend = ScriptedBackend([FIRST, FIRST, NEW])
    store, run_id, events = run_events(tmp_path / "g.db", SCENARIO, backend)
    [planner, critic] = store.messages(run_id)
    assert planner.content == FIRST and "guard" not in (planner.meta or {})
    assert critic.content == NEW
    guard = critic.meta["guard"]
    assert guard["attempts"] == 2 and guard["kept"] == 1
    assert guard["checks"][0]["problems"] == ["copy"] and guard["checks"][0]["copied"] >= 0.5
    assert guard["checks"][1]["problems"] == []
    calls = [(c.turn, c.purpose, c.response) for c in store.calls(run_id)]
    assert calls == [(1, "turn", FIRST), (2, "turn", FIRST), (2, "retry", NEW)]
    # the retry is the same prompt with one note at its end, another seed, a stronger penalty
    first, retry = backend.requests[1], backend.requests[2]
    assert retry.messages[:-1] == first.messages[:-1]
    assert retry.messages[-1].content.startswith(first.messages[-1].content)
    assert "repeated earlier words" in retry.messages[-1].content
    assert retry.options["repeat_penalty"] > first.options.get("repeat_penalty", 1.1)
    retrying = [e for e in events if isinstance(e, Retrying)]
    assert [(e.turn, e.attempt, e.problems) for e in retrying] == [(2, 1, ("copy",))]
    done = [e for e in events if isinstance(e, TurnDone)][-1]
    assert (done.attempts, done.kept) == (2, 1)
    # retries count in the run's totals
    run = store.run(run_id)
    assert run.evaluated_tokens == sum(c.evaluated_tokens for c in store.calls(run_id))


LOOP = ("Measure how often an order changes within its first minute before caching reads. "
        "A stale order after a refund is the risk. ") * 4


def test_a_reply_that_repeats_itself_is_asked_for_again(tmp_path: Path) -> None:
    from personae.orchestrator.resume import SELF_COPIES_SINCE, reload_scenario, run_settings

    backend = ScriptedBackend([FIRST, LOOP, NEW])
    store, run_id, _ = run_events(tmp_path / "g.db", SCENARIO, backend)
    critic = store.messages(run_id)[1]
    assert critic.content == NEW
    check = critic.meta["guard"]["checks"][0]
    assert check["problems"] == ["copy"] and check["copied"] >= 0.7
    # A run from before 0.3.1 resumes and replays with the guard it ran with.
    row = store.run(run_id)
    loaded = reload_scenario(store, row)
    for version, expected in (("0.3.0", False), (".".join(map(str, SELF_COPIES_SINCE)), True)):
        row.personae_version = version
        assert run_settings(row, loaded, backend).check_self_copies is expected, version
    old = ScriptedBackend([FIRST, LOOP, NEW])
    old_store, old_id, _ = run_events(tmp_path / "old.db", SCENARIO, old, check_self_copies=False)
    assert len(old.requests) == 2 and old_store.messages(old_id)[1].content == LOOP.strip()  # no retry


def test_when_every_attempt_fails_the_best_is_kept_and_the_problem_recorded(tmp_path: Path) -> None:
    backend = ScriptedBackend([FIRST, "Planner: I say so.", "ok", FIRST])
    store, run_id, _ = run_events(tmp_path / "g.db", SCENARIO, backend)
    critic = store.messages(run_id)[1]
    guard = critic.meta["guard"]
    assert guard["attempts"] == 3
    # the first attempt spoke only as Planner: cut, nothing left; the second is too short
    assert [c["problems"] for c in guard["checks"]] == [["empty"], ["empty"], ["copy"]]
    assert len(store.calls(run_id, "retry")) == 2
    assert guard["kept"] == 2 and critic.content == FIRST  # a copy is worth more than nothing


def test_the_guard_can_be_turned_off_and_tuned(tmp_path: Path) -> None:
    off = SCENARIO + "guard: {enabled: false}\n"
    backend = ScriptedBackend([FIRST, FIRST])
    store, run_id, _ = run_events(tmp_path / "off.db", off, backend)
    assert [c.purpose for c in store.calls(run_id)] == ["turn", "turn"]
    assert "guard" not in (store.messages(run_id)[1].meta or {})
    one = SCENARIO + "guard: {retries: 1, copy_threshold: 0.9, min_words: 2}\n"
    backend = ScriptedBackend([FIRST, "ok", "Refunds make cached orders stale quickly."])
    store, run_id, _ = run_events(tmp_path / "one.db", one, backend)
    assert [c.purpose for c in store.calls(run_id)] == ["turn", "turn", "retry"]


def test_runs_and_replays_keep_the_guard_they_were_made_with(tmp_path: Path) -> None:
    """A run started before the guard existed (version 0.1.0, no `guard:` in its scenario)
    replays without retries; a guarded run replays its retries exactly."""
    from personae.orchestrator.replay import replay_run

    db = tmp_path / "g.db"
    store, guarded, _ = run_events(db, SCENARIO, ScriptedBackend([FIRST, FIRST, NEW]))
    report = replay_run(store, guarded)
    assert report.identical and [a.purpose for a in report.answered] == ["turn", "turn", "retry"]

    store, old, _ = run_events(db, SCENARIO + "guard: {enabled: false}\n", ScriptedBackend([FIRST, "ok"]))
    with sqlite3.connect(db) as raw:  # as an older Personae stored it
        yaml_text = raw.execute("select scenario_yaml from runs where id = ?", (old,)).fetchone()[0]
        raw.execute(
            "update runs set personae_version = '0.1.0', scenario_yaml = ? where id = ?",
            (yaml_text.replace("guard: {enabled: false}\n", ""), old),
        )
    report = replay_run(store, old)
    assert report.identical, report
    assert [a.purpose for a in report.answered] == ["turn", "turn"]


def test_a_structured_reply_that_does_not_validate_is_asked_for_again(tmp_path: Path) -> None:
    import json

    schema = '{type: object, properties: {decision: {type: string}}, required: [decision]}'
    text = SCENARIO.replace(
        "system: Attack the weakest claim.}",
        f"system: Attack the weakest claim., output_schema: {schema}, "
        "output_template: 'FINAL DECISION: {{ decision }}'}",
    )
    good = json.dumps({"decision": "cache order reads behind a flag"})
    backend = ScriptedBackend([FIRST, '{"decision": ', good])
    store, run_id, _ = run_events(tmp_path / "s.db", text, backend)
    critic = store.messages(run_id)[1]
    assert critic.content == "FINAL DECISION: cache order reads behind a flag"
    assert critic.structured == {"decision": "cache order reads behind a flag"}
    check = critic.meta["guard"]["checks"][0]
    assert check["problems"] == ["schema"] and "decision" in check["schema_error"]
    assert "Not the JSON asked for" in backend.requests[2].messages[-1].content


@pytest.mark.slow
def test_the_live_stream_shows_a_structured_reply_as_the_others_read_it(
    tmp_path: Path, cli_env: dict[str, str], scripted_ollama_server: Any
) -> None:
    """The stream shows the JSON the model wrote; the rendered text (the decision line) follows,
    and retries are announced, as a person watching the run needs to see them."""
    import json
    import subprocess

    from tests.conftest import personae_cmd

    schema = '{type: object, properties: {decision: {type: string}}, required: [decision]}'
    text = SCENARIO.replace(
        "system: Attack the weakest claim.}",
        f"system: Attack the weakest claim., output_schema: {schema}, "
        "output_template: 'FINAL DECISION: {{ decision }}'}",
    ) + "memory: {num_ctx: 2048, collapse: null}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    answers = iter([FIRST, FIRST, NEW])

    def reply(request: Any) -> str:
        if request.schema is not None:
            return json.dumps({"decision": "cache order reads behind a flag"})
        return next(answers)

    scripted_ollama_server.backend.default = reply
    env = {**cli_env, "OLLAMA_HOST": scripted_ollama_server.host}
    done = subprocess.run(
        personae_cmd("run", str(path), "--backend", "ollama", "--model", "smollm2:135m", "--max-turns", "3"),
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "as the others read it:\nFINAL DECISION: cache order reads behind a flag" in done.stdout
    assert "asking again (copy" in done.stdout and "attempt 2" in done.stdout  # turn 3 repeated turn 1
    assert "Traceback" not in done.stderr
