"""Replay and fork: re-executing a stored run from its recorded replies, without a model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.recorded import ReplayBackend, ReplayDiverged, ReplayExhausted
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.replay import fork_run, replay_run
from personae.store.models import LLMCall
from personae.store.repo import prompt_hash
from tests.conftest import personae_cmd
from tests.durable_support import (
    run_to_end,
    scenario_text,
    table_counts,
    transcript,
    write_scenario,
)

PHASES = """\
policy:
  type: phases
  phases:
    - {name: plan, speakers: [Planner]}
    - {name: debate, speakers: [Analyst, Critic], rounds: 2}
    - {name: conclude, speakers: [Planner]}
memory: {collapse: null}
termination: {max_turns: 20}
"""


def numbered() -> ScriptedBackend:
    """Replies that differ each turn, so a transcript mix-up cannot go unnoticed."""
    count = iter(range(1, 1000))
    return ScriptedBackend(default=lambda _req: f"Point {next(count)}: the p99 matters.")


def test_replay_of_a_finished_run_is_identical_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store, run_id = run_to_end(db, scenario_text(PHASES), numbered())
    before = table_counts(db)
    report = replay_run(store, run_id)
    assert report.identical, report
    assert report.turns == 6 and len(report.answered) == 6
    assert [a.turn for a in report.answered] == [1, 2, 3, 4, 5, 6]
    assert all(a.matched for a in report.answered)
    assert table_counts(db) == before  # the user's database gained no rows


def test_replay_reports_the_first_turn_whose_persona_changed(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    path = write_scenario(folder, scenario_text(PHASES) + "layout: cache_friendly\n")
    store, run_id = run_to_end(tmp_path / "p.db", path, numbered())
    path.write_text(
        path.read_text().replace("Attack the weakest claim.", "Praise every claim."), encoding="utf-8"
    )
    # The run's own (frozen) personas still replay identically...
    assert replay_run(store, run_id).identical
    # ...while the edited files show where the edit changes the run: every persona's
    # instructions are in the header every prompt starts with, so from the first turn on.
    report = replay_run(store, run_id, scenario_file=path)
    assert not report.identical and report.first_difference == 1
    first = report.divergences[0]
    assert (first.turn, first.persona, first.purpose) == (1, "Planner", "turn")
    diff = "\n".join(first.diff())
    assert "-Attack the weakest claim." in diff and "+Praise every claim." in diff
    assert report.turns == 0  # it stopped at the difference


@pytest.mark.parametrize("layout", ["classic", "transcript", "named"])
def test_replay_classic_reports_the_first_turn_whose_persona_changed(tmp_path: Path, layout: str) -> None:
    """In the classic and speaker-last layouts only the speaker's own instructions are in its
    prompt: an edit to the Critic first shows at the Critic's first turn."""
    path = write_scenario(tmp_path / "project", scenario_text(PHASES) + f"layout: {layout}\n")
    store, run_id = run_to_end(tmp_path / "p.db", path, numbered())
    path.write_text(path.read_text().replace("Attack the weakest claim.", "Praise every claim."), encoding="utf-8")
    report = replay_run(store, run_id, scenario_file=path)
    assert not report.identical and report.first_difference == 3
    assert (report.divergences[0].turn, report.divergences[0].persona) == (3, "Critic")
    assert report.turns == 2


def test_replay_all_lists_every_differing_turn(tmp_path: Path) -> None:
    for layout, differing in (
        ("classic", [2, 4]), ("transcript", [2, 4]), ("cache_friendly", [1, 2, 3, 4, 5, 6]),
    ):
        path = write_scenario(tmp_path / layout, scenario_text(PHASES) + f"layout: {layout}\n")
        store, run_id = run_to_end(tmp_path / f"{layout}.db", path, numbered())
        path.write_text(path.read_text().replace("Bring numbers.", "Bring anecdotes."), encoding="utf-8")
        report = replay_run(store, run_id, scenario_file=path, keep_going=True)
        # classic, transcript: the Analyst's turns only; cache_friendly: the header of every prompt
        assert sorted(d.turn for d in report.divergences) == differing
        assert report.turns == 6 and not report.content_changes


def test_replay_detects_a_prompt_recorded_by_different_code(tmp_path: Path) -> None:
    """A recording made by code that built turn 4's prompt differently is caught at turn 4."""
    db = tmp_path / "p.db"
    store, run_id = run_to_end(db, scenario_text(PHASES), numbered())
    with sqlite3.connect(db) as connection:
        prompt_json, = connection.execute(
            "select prompt from llm_calls where run_id = ? and turn = 4", (run_id,)
        ).fetchone()
        prompt = json.loads(prompt_json)
        prompt[-1]["content"] = prompt[-1]["content"].replace("Now it is ", "Your turn now. ")
        new_hash = prompt_hash(tuple(ChatMessage(m["role"], m["content"]) for m in prompt))
        connection.execute(
            "update llm_calls set prompt = ?, prompt_hash = ? where run_id = ? and turn = 4",
            (json.dumps(prompt), new_hash, run_id),
        )
    report = replay_run(store, run_id)
    assert report.first_difference == 4
    assert any(line.startswith("-") and "Your turn now." in line for line in report.divergences[0].diff())


def test_replay_reports_a_run_that_now_stops_elsewhere(tmp_path: Path) -> None:
    path = write_scenario(tmp_path / "project", scenario_text(PHASES))
    backend = ScriptedBackend(["a", "b", "DONE here", "c", "d", "e"])
    store, run_id = run_to_end(tmp_path / "p.db", path, backend)
    edited = path.read_text().replace(
        "termination: {max_turns: 20}", "termination: {max_turns: 20, stop_phrase: DONE}"
    )
    path.write_text(edited, encoding="utf-8")
    report = replay_run(store, run_id, scenario_file=path)
    assert not report.identical and report.turns == 3
    assert report.problem and "stopped after turn 3" in report.problem


def test_replay_of_an_interrupted_run_checks_what_was_recorded(tmp_path: Path) -> None:
    def interrupt(_req: ChatRequest) -> str:
        raise KeyboardInterrupt

    db = tmp_path / "p.db"
    backend = ScriptedBackend(["one", "two", "three", interrupt])
    with pytest.raises(KeyboardInterrupt):
        run_to_end(db, scenario_text(PHASES), backend)
    from personae.store.repo import Store

    store = Store.open(db)
    assert store.run(1).status == "interrupted"
    report = replay_run(store, 1)
    assert report.identical and report.turns == 3


def test_replay_keeps_dropping_old_turns_exactly_as_recorded(tmp_path: Path) -> None:
    """Prompts that had to drop turns to fit the window: counts for prompts never sent must
    imitate the original backend, or the replay would keep other turns."""
    db = tmp_path / "p.db"
    text = scenario_text("memory: {num_ctx: 700, collapse: null}\ntermination: {max_turns: 12}\n")
    store, run_id = run_to_end(db, text, ScriptedBackend(default="word " * 100, num_ctx=700))
    assert any("dropped_turns" in s for c in store.calls(run_id) for s in c.manifest)
    assert replay_run(store, run_id).identical


def _call(id: int, purpose: str, turn: int, text: str, *, response: str = "r", error: str | None = None) -> LLMCall:
    messages = (ChatMessage("user", text),)
    return LLMCall(
        id=id, run_id=1, turn=turn, purpose=purpose, persona="P", backend="scripted", model="m",
        options={}, prompt=[m.to_dict() for m in messages], prompt_hash=prompt_hash(messages),
        manifest=[], response=response, prompt_tokens=3, evaluated_tokens=2, completion_tokens=1,
        total_ns=0, load_ns=0, prompt_eval_ns=0, eval_ns=0, wall_ns=0, error=error,
    )


def _ask(backend: ReplayBackend, text: str) -> str:
    return backend.chat(ChatRequest((ChatMessage("user", text),))).text


def test_replay_backend_answers_each_purpose_in_its_recorded_order() -> None:
    calls = [
        _call(1, "select", 1, "who first?", response="Planner"),
        _call(2, "turn", 1, "plan", response="the plan"),
        _call(3, "collapse", 1, "sum up", response='{"summary": "s"}'),
        _call(4, "select", 2, "who next?", response="Critic"),
        _call(5, "turn", 2, "criticise", response="a flaw", error=None),
        _call(6, "turn", 3, "again", response=None, error="server went away"),  # a failed call
        _call(7, "collapse", 3, "sum up again", response="{}", error="rejected: no summary"),
    ]
    backend = ReplayBackend(calls)
    assert _ask(backend, "who first?") == "Planner"
    assert _ask(backend, "plan") == "the plan"
    assert _ask(backend, "sum up") == '{"summary": "s"}'
    assert _ask(backend, "who next?") == "Critic"
    assert _ask(backend, "criticise") == "a flaw"
    assert _ask(backend, "sum up again") == "{}"  # answered, then rejected: the code asks again
    assert backend.exhausted
    with pytest.raises(ReplayExhausted):
        _ask(backend, "one more")
    result = ReplayBackend(calls[:2]).chat(ChatRequest((ChatMessage("user", "who first?"),)))
    assert (result.usage.prompt_tokens, result.usage.evaluated_tokens) == (3, 2)


def test_replay_backend_skips_the_remains_of_an_interrupted_attempt() -> None:
    """A crash after a collapse call was recorded but before its turn committed leaves a row; the
    resumed run asked the same again, so the replay skips the first."""
    calls = [
        _call(1, "turn", 1, "t1"),
        _call(2, "collapse", 1, "old attempt"),
        _call(3, "collapse", 1, "sum up"),
        _call(4, "turn", 2, "t2"),
    ]
    backend = ReplayBackend(calls)
    for text in ("t1", "sum up", "t2"):
        _ask(backend, text)
    assert backend.exhausted and not backend.divergences


def test_replay_backend_strict_and_lenient() -> None:
    calls = [_call(1, "turn", 1, "recorded prompt", response="recorded reply")]
    with pytest.raises(ReplayDiverged) as caught:
        _ask(ReplayBackend(calls), "another prompt")
    assert caught.value.divergence.turn == 1
    lenient = ReplayBackend(calls, strict=False)
    assert _ask(lenient, "another prompt") == "recorded reply"
    assert len(lenient.divergences) == 1 and not lenient.answered[0].matched


def test_fork_copies_turns_then_goes_on_live(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store, parent = run_to_end(db, scenario_text(PHASES), numbered())
    live = ScriptedBackend(default="Live reply.")
    fork = fork_run(store, parent, 3, live)
    events = list(fork.orchestrator.run(fork.run_id))
    assert events[-1].status == "completed"
    row = store.run(fork.run_id)
    assert (row.parent_run_id, row.fork_turn, row.status, row.turns) == (parent, 3, "completed", 6)
    assert transcript(db, fork.run_id)[:3] == transcript(db, parent)[:3]
    assert [t[3] for t in transcript(db, fork.run_id)[3:]] == ["Live reply."] * 3
    # The model was asked only for the new turns, and saw the copied transcript.
    assert len(live.requests) == 3
    assert "Point 3: the p99 matters." in "\n".join(m.content for m in live.requests[0].messages)
    calls = store.calls(fork.run_id)
    assert [(c.turn, c.backend) for c in calls] == [
        (1, "replay"), (2, "replay"), (3, "replay"), (4, "scripted"), (5, "scripted"), (6, "scripted")
    ]
    parent_calls = store.calls(parent)
    assert [c.prompt_hash for c in calls[:3]] == [c.prompt_hash for c in parent_calls[:3]]
    assert [c.prompt_tokens for c in calls[:3]] == [c.prompt_tokens for c in parent_calls[:3]]
    assert [(p.name, p.definition) for p in store.run_personas(fork.run_id)] == [
        (p.name, p.definition) for p in store.run_personas(parent)
    ]


def test_fork_at_a_turn_outside_the_run_is_refused(tmp_path: Path) -> None:
    from personae.errors import UserError

    store, parent = run_to_end(tmp_path / "p.db", scenario_text(PHASES), numbered())
    with pytest.raises(UserError, match="messages 1 to 6"):
        fork_run(store, parent, 7, ScriptedBackend())
    with pytest.raises(UserError, match="below the 5 turns that messages 1 to 5 hold"):
        fork_run(store, parent, 5, ScriptedBackend(), max_turns=4)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_replay_reports_identical_then_the_first_differing_turn(
    tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    """The run was made with the scripted backend, which the command line cannot even open:
    replay succeeding proves no model is needed."""
    path = write_scenario(tmp_path / "project", scenario_text(PHASES))
    run_to_end(isolated_env, path, numbered())
    ok = subprocess.run(personae_cmd("replay", "1", "-v"), capture_output=True, text=True, env=cli_env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "Every prompt hashes exactly as recorded" in ok.stdout
    assert ok.stdout.count("identical") == 6
    assert "Traceback" not in ok.stderr

    path.write_text(path.read_text().replace("Attack the weakest claim.", "Agree."), encoding="utf-8")
    changed = subprocess.run(
        personae_cmd("replay", "1", "--scenario", str(path)), capture_output=True, text=True, env=cli_env, timeout=120
    )
    assert changed.returncode == 1
    assert "First difference at turn 3." in changed.stdout  # the Critic's first turn
    assert "-Attack the weakest claim." in changed.stdout and "+Agree." in changed.stdout

    as_json = subprocess.run(
        personae_cmd("replay", "1", "--format", "json"), capture_output=True, text=True, env=cli_env, timeout=120
    )
    payload = json.loads(as_json.stdout)
    assert payload["identical"] and len(payload["calls"]) == 6
    assert all(len(c["prompt_hash"]) == 64 and c["identical"] for c in payload["calls"])


@pytest.mark.slow
def test_cli_runs_shows_lineage(tmp_path: Path, cli_env: dict[str, str], isolated_env: Path) -> None:
    from personae.store.repo import Store

    store, parent = run_to_end(isolated_env, scenario_text(PHASES), numbered())
    fork = fork_run(store, parent, 2, ScriptedBackend())
    for _ in fork.orchestrator.run(fork.run_id):
        pass
    store.close()
    listing = subprocess.run(personae_cmd("runs", "-f", "table"), capture_output=True, text=True, env=cli_env, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "2 ← 1@2" in listing.stdout
    piped = subprocess.run(personae_cmd("runs"), capture_output=True, text=True, env=cli_env, timeout=60)
    header, *lines = piped.stdout.splitlines()
    fork_row = dict(zip(header.split("\t"), lines[0].split("\t")))
    assert (fork_row["id"], fork_row["parent_run_id"], fork_row["fork_turn"]) == ("2", "1", "2")
    as_json = subprocess.run(personae_cmd("runs", "-f", "json"), capture_output=True, text=True, env=cli_env, timeout=60)
    rows = {r["id"]: r for r in json.loads(as_json.stdout)}
    assert (rows[2]["parent_run_id"], rows[2]["fork_turn"]) == (1, 2)
    assert Store.open(isolated_env).run(2).parent_run_id == 1


COLLAPSING = "memory: {num_ctx: 1024, collapse: {every_turns: 3, keep_recent: 2, summarizer: Critic}}\ntermination: {max_turns: 10}\n"


def collapsing_backend() -> ScriptedBackend:
    """Valid collapse answers (a summary and a fact citing a turn), plain text for turns."""
    count = iter(range(1, 1000))

    def reply(request: ChatRequest) -> str:
        n = next(count)
        if request.schema is None:
            return f"Point {n}: the p99 matters."
        props = request.schema["properties"]
        if "facts" not in props:
            return json.dumps({"summary": f"Merged {n}."})
        turns = props["facts"]["items"]["properties"]["turns"]["items"]["enum"]
        fact = {"text": f"Fact {n} holds.", "turns": [turns[0]]}
        return json.dumps({"summary": f"Summary {n}.", "facts": [fact], "decisions": [], "open_questions": []})

    return ScriptedBackend(default=reply)


def test_replay_answers_collapse_calls_too(tmp_path: Path) -> None:
    store, run_id = run_to_end(tmp_path / "p.db", scenario_text(COLLAPSING), collapsing_backend())
    purposes = [c.purpose for c in store.calls(run_id)]
    assert purposes.count("collapse") >= 2
    report = replay_run(store, run_id)
    assert report.identical, [d.describe() for d in report.divergences]
    assert [a.purpose for a in report.answered] == purposes


def test_replay_answers_rejected_collapse_answers_as_recorded(tmp_path: Path) -> None:
    """A collapse answer that failed validation was recorded (error "rejected: …") and asked
    again; the replay must give the same bad answer first."""
    store, run_id = run_to_end(tmp_path / "p.db", scenario_text(COLLAPSING), numbered())
    assert any((c.error or "").startswith("rejected") for c in store.calls(run_id))
    assert replay_run(store, run_id).identical


def test_replay_of_a_collapsing_run_that_is_not_the_first_in_its_database(tmp_path: Path) -> None:
    """Prompts must not depend on database ids (memory items are numbered within the prompt),
    or a run replayed into a fresh database would differ."""
    db = tmp_path / "p.db"
    run_to_end(db, scenario_text(COLLAPSING), collapsing_backend())
    store, second = run_to_end(db, scenario_text(COLLAPSING), collapsing_backend())
    assert replay_run(store, second).identical


def test_a_fork_after_collapses_rebuilds_the_same_memory(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store, parent = run_to_end(db, scenario_text(COLLAPSING), collapsing_backend())
    fork = fork_run(store, parent, 8, ScriptedBackend(default="Live."))
    for _ in fork.orchestrator.run(fork.run_id):
        pass
    assert fork.replay.divergences == []  # the copied turns were rebuilt exactly
    with sqlite3.connect(db) as connection:
        def memory(run_id: int) -> list[tuple[str, str, int]]:
            return connection.execute(
                "select kind, text, turn from memory_nodes where run_id = ? and kind not in "
                "('message', 'persona') and turn <= 8 order by id", (run_id,)
            ).fetchall()

        assert memory(fork.run_id) == memory(parent) and memory(parent)
    parent_calls = [c.prompt_hash for c in store.calls(parent) if c.turn is not None and c.turn <= 8]
    fork_calls = [c.prompt_hash for c in store.calls(fork.run_id) if c.turn is not None and c.turn <= 8]
    assert fork_calls == parent_calls


def test_replay_fails_a_collapse_call_the_run_went_on_from_as_recorded(tmp_path: Path) -> None:
    """A server that refuses every collapse call (llama-cpp-python's server rejects the
    ``json_schema`` response format) leaves the run on its extractive fallback; the replay must
    fail those calls the same way, not expect a turn where the run made a collapse."""
    from personae.errors import BackendError

    def refuse_collapses(request: ChatRequest) -> str:
        if request.schema is not None:
            raise BackendError("answered 500: response_format json_schema is not supported")
        return f"Noted {len(request.messages[-1].content)} characters."

    store, run_id = run_to_end(tmp_path / "p.db", scenario_text(COLLAPSING), ScriptedBackend(default=refuse_collapses))
    failed = [c for c in store.calls(run_id) if c.purpose == "collapse"]
    assert failed and all(c.response is None and c.error for c in failed)
    report = replay_run(store, run_id)
    assert report.identical, [d.describe() for d in report.divergences]
    assert [a.purpose for a in report.answered] == [c.purpose for c in store.calls(run_id)]
