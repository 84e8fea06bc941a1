"""Stop rules, alone and combined (``|``/``&`` in Python, ``any:``/``all:`` in YAML), and the
reason a run stopped: stored on the run and shown by ``personae runs`` and ``personae show``."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from personae.config import load_scenario_text
from personae.config.models import TerminationConfig
from personae.errors import ConfigError
from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.state import RunState, Utterance
from personae.orchestrator.termination import (
    AllOf,
    AnyOf,
    Approved,
    Consensus,
    MaxTurns,
    StopPhrase,
    Timeout,
    TokenBudget,
    make_stop_rule,
)
from personae.store.repo import Store
from tests.conftest import personae_cmd
from tests.durable_support import run_to_end


def said(*lines: tuple[str, str]) -> tuple[Utterance, ...]:
    return tuple(Utterance(i + 1, who, None, text) for i, (who, text) in enumerate(lines))


def state(history: tuple[Utterance, ...] = (), **kw: object) -> RunState:
    return RunState(run_id=1, history=history, **kw)  # type: ignore[arg-type]


VERDICT = Utterance(2, "Critic", None, "Approved.", structured={"approve": True, "issues": []},
                    meta={"reflect": "verdict"})


def test_max_turns_counts_persona_turns_only() -> None:
    history = said(("Planner", "a"), ("User", "hi"), ("Critic", "b"))
    assert MaxTurns(3).check(state(history)) is None
    assert MaxTurns(2).check(state(history)) == "max_turns"


def test_stop_phrase_looks_at_the_last_message_case_insensitively() -> None:
    assert StopPhrase("FINAL DECISION:").check(state(said(("S", "final decision: yes")))) == "stop_phrase"
    assert StopPhrase("FINAL DECISION:").check(state(said(("S", "FINAL DECISION: x"), ("C", "no")))) is None


def test_approved_needs_an_approving_verdict_last() -> None:
    draft = Utterance(1, "Planner", None, "Plan.")
    assert Approved().check(state((draft, VERDICT))) == "approved"
    assert Approved().check(state((draft, VERDICT, Utterance(3, "User", None, "ok")))) == "approved"
    rejection = Utterance(2, "Critic", None, "No.", structured={"approve": False, "issues": []},
                          meta={"reflect": "verdict"})
    assert Approved().check(state((draft, rejection))) is None
    assert Approved().check(state((draft,))) is None


def test_consensus_needs_every_listed_persona_to_agree_last() -> None:
    rule = Consensus(("Analyst", "Critic"), "I AGREE")
    assert rule.check(state(said(("Analyst", "I agree."), ("Planner", "x")))) is None  # Critic silent
    agreed = said(("Critic", "No."), ("Analyst", "I agree."), ("Critic", "Fine, i agree"))
    assert rule.check(state(agreed)) == "consensus"
    changed_mind = agreed + said(("Analyst", "Actually no."))
    assert rule.check(state(changed_mind)) is None
    vote = Utterance(9, "Analyst", None, "Agree: yes", structured={"agree": True})
    assert rule.check(state(agreed + (vote,))) == "consensus"


def test_token_budget_and_timeout() -> None:
    assert TokenBudget(100).check(state(evaluated_tokens=99)) is None
    assert TokenBudget(100).check(state(evaluated_tokens=100)) == "token_budget"
    assert Timeout(0.5).check(state(started_monotonic=time.monotonic())) is None
    assert Timeout(0.5).check(state(started_monotonic=time.monotonic() - 1)) == "timeout"


def test_rules_combine_with_or_and_and() -> None:
    s = state(said(("A", "FINAL DECISION: go")), evaluated_tokens=10)
    phrase, budget = StopPhrase("FINAL DECISION:"), TokenBudget(1000)
    assert (phrase | budget).check(s) == "stop_phrase"
    assert (budget | phrase).check(s) == "stop_phrase"
    assert (phrase & budget).check(s) is None
    assert (phrase & TokenBudget(5)).check(s) == "stop_phrase and token_budget"
    assert isinstance(phrase | budget, AnyOf) and isinstance(phrase & budget, AllOf)
    assert ((MaxTurns(9) & budget) | phrase).check(s) == "stop_phrase"


def rules(text: str):
    return make_stop_rule(TerminationConfig.model_validate(yaml.safe_load(text)), roster=["A", "B"])


def test_yaml_any_and_all_nest() -> None:
    rule = rules("""
max_turns: 10
any:
  - stop_phrase: DONE
  - all: [{token_budget: 50}, {consensus: true}]
""")
    agreed = said(("A", "I agree"), ("B", "I AGREE too"))
    assert rule.check(state(agreed, evaluated_tokens=60)) == "token_budget and consensus"
    assert rule.check(state(agreed, evaluated_tokens=10)) is None  # budget not reached
    assert rule.check(state(said(("A", "done")), evaluated_tokens=0)) == "stop_phrase"
    assert rule.check(state(said(*[("A", "x")] * 10))) == "max_turns"  # the cap always holds
    after = state((Utterance(1, "P", None, "x"), VERDICT, Utterance(3, "P", None, "y")))
    assert rules("all: [{approved: true}, {max_turns: 3}]").check(after) is None  # verdict not last
    approved = state((Utterance(1, "P", None, "x"), VERDICT))
    assert rules("all: [{approved: true}, {max_turns: 2}]").check(approved) == "approved and max_turns"


def test_yaml_errors_for_stop_rules() -> None:
    base = "name: t\ngoal: g\nguard: {enabled: false}\npersonas: [Planner, Critic]\n"
    for termination, expected in [
        ("{any: [{stop_phrase: X, approved: true}]}", "exactly one rule"),
        ("{any: [{stop_phrse: X}]}", "did you mean 'stop_phrase'"),
        ("{timeout: soon}", "not a duration"),
        ("{any: []}", "at least 1"),
        ("{consensus: {personas: [Critc]}}", "did you mean 'Critic'"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            load_scenario_text(base + f"termination: {termination}\n")
    assert TerminationConfig(timeout="2m").timeout == 120


def run_scenario(termination: str, backend: ScriptedBackend, db: Path) -> tuple[Store, int]:
    text = (
        "name: stop-test\ngoal: g\nguard: {enabled: false}\npersonas:\n  - {name: A, system: a}\n  - {name: B, system: b}\n"
        f"termination: {termination}\n"
    )
    return run_to_end(db, text, backend)


@pytest.mark.parametrize(
    ("termination", "replies", "reason", "turns"),
    [
        ("{max_turns: 3}", [], "max_turns", 3),
        ('{max_turns: 9, stop_phrase: "DONE"}', ["x", "y", "all DONE"], "stop_phrase", 3),
        ("{max_turns: 9, consensus: true}", ["I agree", "no", "I agree", "I agree"], "consensus", 4),
        ("{max_turns: 9, token_budget: 40}", [], "token_budget", None),
        ("{max_turns: 9, all: [{stop_phrase: ok}, {max_turns: 4}]}", ["ok"] * 9, "stop_phrase and max_turns", 4),
        ("{max_turns: 9, any: [{stop_phrase: never}, {max_turns: 2}]}", [], "max_turns", 2),
    ],
)
def test_runs_store_why_they_stopped(
    tmp_path: Path, termination: str, replies: list[str], reason: str, turns: int | None
) -> None:
    store, run_id = run_scenario(termination, ScriptedBackend(replies, default="word " * 5), tmp_path / "s.db")
    run = store.run(run_id)
    assert (run.status, run.stop_reason) == ("completed", reason)
    if turns is not None:
        assert run.turns == turns
    if reason == "token_budget":  # stops at the first check after the budget is used up
        assert run.evaluated_tokens >= 40
        calls = store.calls(run_id)
        assert sum(c.evaluated_tokens for c in calls[:-1]) < 40


def test_timeout_stops_a_slow_run(tmp_path: Path) -> None:
    def slow(_: ChatRequest) -> str:
        time.sleep(0.3)
        return "slowly"

    store, run_id = run_scenario("{max_turns: 50, timeout: 0.5}", ScriptedBackend(default=slow), tmp_path / "t.db")
    run = store.run(run_id)
    assert run.stop_reason == "timeout" and 2 <= run.turns <= 3


@pytest.mark.slow
def test_runs_and_show_say_why_a_run_stopped(tmp_path: Path, cli_env: dict[str, str]) -> None:
    db = tmp_path / "cli.db"
    run_scenario("{max_turns: 9, token_budget: 40}", ScriptedBackend(default="word " * 5), db)
    run_scenario("{max_turns: 2}", ScriptedBackend(), db)
    table = subprocess.run(personae_cmd("runs", "--db", str(db), "-f", "table"), env=cli_env, capture_output=True, text=True, check=False)
    assert table.returncode == 0, table.stderr
    assert "stopped by" in table.stdout and "token_budget" in table.stdout and "max_turns" in table.stdout
    listed = subprocess.run(
        personae_cmd("runs", "--db", str(db), "--format", "json"), env=cli_env, capture_output=True, text=True, check=False
    )
    assert [r["stop_reason"] for r in json.loads(listed.stdout)] == ["max_turns", "token_budget"]
    shown = subprocess.run(personae_cmd("show", "1", "--db", str(db)), env=cli_env, capture_output=True, text=True, check=False)
    assert "completed (token_budget)" in shown.stdout.splitlines()[0]
