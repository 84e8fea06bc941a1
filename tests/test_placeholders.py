"""A structured reply whose fields repeat the schema's descriptions or hold placeholders is a
copy, for the reply guard (asked for again) and for `personae score` alike; runs started before
this check replay with the guard they ran with."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from personae.config.models import Persona
from personae.llm.scripted import ScriptedBackend
from personae.orchestrator.resume import REPLY_RULES_SINCE, reload_scenario, run_settings
from personae.orchestrator.state import Retrying
from personae.quality.placeholders import placeholder_fields
from personae.quality.runs import score_run
from tests.conftest import personae_cmd
from tests.durable_support import run_events
from tests.test_guard import FIRST, SCENARIO

SUMMARIZER = Persona.model_validate(
    yaml.safe_load((Path(__file__).parent.parent / "personae/builtin/personas/summarizer.yaml").read_text())
)
SCHEMA = SUMMARIZER.output_schema
assert SCHEMA is not None
# What the README's first run printed: "FINAL DECISION: [1.2.3, The decision in one sentence]}} } {"
COPIED = {
    "agreed": ["1.2.3"], "still_open": [], "next_step": "the next step and who owns it",
    "decision": "[1.2.3, The decision in one sentence]}} } {",
}
REAL = {
    "agreed": ["Cache order reads in Redis"], "still_open": ["TTL after a refund"],
    "next_step": "Dana writes the rollout plan by Friday",
    "decision": "We put Redis in front of order reads, behind a flag.",
}


@pytest.mark.parametrize(
    ("fields", "empty"),
    [
        (COPIED, ["$.agreed[0]", "$.next_step", "$.decision"]),
        (REAL, []),
        ({**REAL, "still_open": ["...", "-"]}, ["$.still_open[0]", "$.still_open[1]"]),
        ({**REAL, "next_step": "<owner>", "decision": "TBD"}, ["$.next_step", "$.decision"]),
        ({**REAL, "agreed": ["the points the group agreed on"]}, ["$.agreed[0]"]),
        ({**REAL, "decision": "[insert the decision here]"}, ["$.decision"]),
        ({**REAL, "still_open": []}, []),  # nothing open is an answer
    ],
)
def test_placeholder_fields(fields: dict[str, object], empty: list[str]) -> None:
    assert placeholder_fields(fields, SCHEMA) == empty


def critic_with_schema() -> str:
    schema = json.dumps(SCHEMA)
    return SCENARIO.replace(
        "system: Attack the weakest claim.}",
        f"system: Attack the weakest claim., output_schema: {schema}}}",
    )


def test_the_guard_asks_again_for_a_reply_of_placeholders(tmp_path: Path) -> None:
    backend = ScriptedBackend([FIRST, json.dumps(COPIED), json.dumps(REAL)])
    store, run_id, events = run_events(tmp_path / "p.db", critic_with_schema(), backend)
    critic = store.messages(run_id)[1]
    assert critic.structured == REAL
    check = critic.meta["guard"]["checks"][0]
    assert check["problems"] == ["copy"]
    assert check["placeholders"] == ["$.agreed[0]", "$.next_step", "$.decision"]
    note = backend.requests[2].messages[-1].content
    assert "Fields agreed, next_step, decision only repeated the instructions" in note
    assert [e.problems for e in events if isinstance(e, Retrying)] == [("copy",)]


def test_runs_from_before_the_check_resume_and_replay_with_their_old_guard(tmp_path: Path) -> None:
    backend = ScriptedBackend([FIRST, json.dumps(COPIED)], default=json.dumps(REAL))
    store, run_id, _ = run_events(tmp_path / "p.db", critic_with_schema(), backend)
    row = store.run(run_id)
    loaded = reload_scenario(store, row)
    for version, expected in (("0.2.1", False), (".".join(map(str, REPLY_RULES_SINCE)), True)):
        row.personae_version = version
        assert run_settings(row, loaded, backend).check_placeholders is expected, version


@pytest.mark.slow
def test_personae_score_calls_a_reply_of_placeholders_a_copy(tmp_path: Path, cli_env: dict[str, str]) -> None:
    text = critic_with_schema() + "guard: {enabled: false}\n"
    store, run_id, _ = run_events(tmp_path / "s.db", text, ScriptedBackend([FIRST, json.dumps(COPIED)]))
    scores = score_run(store, run_id)
    assert [s.copy for s in scores] == [False, True]
    store.close()
    result = subprocess.run(
        personae_cmd("score", "last", "--db", str(tmp_path / "s.db"), "-f", "json"),
        capture_output=True, text=True, env=cli_env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout)["replies"]
    assert [(r["persona"], r["good"]) for r in replies] == [("Planner", True), ("Critic", False)]
    assert "copy" in replies[1]["failures"].split(", ") and replies[1]["copied"] == 1.0
