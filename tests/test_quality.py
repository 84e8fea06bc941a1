"""The quality scorer on hand-made transcripts: each failure kind is caught, a good reply passes,
and ``personae score`` reads a stored run back (scripted backend, a real SQLite file)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from personae.llm.scripted import ScriptedBackend
from personae.quality import Deliberation, Reply, score, speaks_as, summarize
from personae.quality.runs import score_run
from tests.conftest import personae_cmd
from tests.durable_support import run_events

GOAL = "Decide whether the orders API needs a Redis cache, and how to roll it out safely."
CONTEXT = "The orders API serves 1,200 requests per second; p99 latency is 900 ms; 80% are reads."
INSTRUCTIONS = {
    "Planner": "Turns the discussion into numbered steps.\nPropose a plan as numbered steps.",
    "Critic": "Finds flaws.\nAttack the weakest claim made so far.",
    "Summarizer": "Sums up.\nEnd with one line that starts with FINAL DECISION: and the decision.",
}


def scored(*replies: Reply):
    return score(Deliberation(GOAL, CONTEXT, (), INSTRUCTIONS, tuple(replies)))


def test_a_good_reply_passes() -> None:
    [s] = scored(Reply("Critic", "Caching reads could serve stale orders after a refund; measure "
                                  "how often an order changes within its first minute."))
    assert s.good and s.failures == [] and s.shared_content >= 2


def test_empty_reply() -> None:
    [s] = scored(Reply("Critic", "I agree, cache."))
    assert s.empty and not s.good and "empty" in s.failures


def test_copy_of_an_earlier_message() -> None:
    first = "Put Redis in front of the order reads and expire entries after thirty seconds."
    a, b = scored(Reply("Planner", first), Reply("Critic", first + " Yes."))
    assert a.good and b.copy and b.copied >= 0.5 and not b.good


def test_a_reply_that_loops_over_itself_is_a_copy() -> None:
    paragraph = ("Measure how often an order changes within its first minute before caching reads. "
                 "A stale order after a refund is the risk. ")
    [s] = scored(Reply("Critic", paragraph * 4))  # what the 135M model's Planner did in the README run
    assert s.copy and s.copied >= 0.7 and not s.good
    [once] = scored(Reply("Critic", paragraph))
    assert once.good and once.copied == 0


def test_parroting_the_prompt_is_a_copy() -> None:
    [s] = scored(Reply("Critic", f"{GOAL} {CONTEXT}"))
    assert s.copy and not s.good
    [p] = scored(Reply("Critic", "Attack the weakest claim made so far, said the orders API team.",
                       prompt="Attack the weakest claim made so far"))
    assert p.copied > 0


def test_off_topic_reply() -> None:
    [s] = scored(Reply("Critic", "The team-building event will have twenty people and a picnic lunch."))
    assert s.off_topic and not s.good


def test_speaking_as_another_persona() -> None:
    [s] = scored(Reply("Critic", "The cache helps reads.\nPlanner: 1. Add Redis for order reads."))
    assert s.other_voice == "Planner" and not s.good
    for text in ("As the Planner, I propose caching order reads.", "I am the Summarizer of the cache talk.",
                 "## 2. Planner\nRedis for reads.", "**Plan\u200bner**: add a cache for orders."):
        assert speaks_as(text, "Critic", INSTRUCTIONS) is not None, text
    assert speaks_as("As the Planner said, caching order reads helps.", "Critic", INSTRUCTIONS) is None


def test_cut_and_contracts() -> None:
    plan, summary, bad = scored(
        Reply("Planner", "1. Cache order reads in Redis.\n2. Roll out to 5% of API traffic.", done_reason="length"),
        Reply("Summarizer", "Agreed: a Redis cache for reads.\nFINAL DECISION: add the cache behind a flag."),
        Reply("Summarizer", "We talked about the cache for the orders API and the latency."),
    )
    assert plan.cut and plan.contract is True and plan.contract_kind == "numbered"
    assert summary.contract is True and summary.contract_kind == "closing"
    assert bad.contract is False
    s = summarize([plan, summary, bad])
    assert (s.replies, s.counts["cut"], s.contracts, s.contracts_kept) == (3, 1, 3, 2)


@pytest.mark.slow
def test_a_stored_run_is_scored_from_the_database(tmp_path: Path, cli_env: dict[str, str]) -> None:
    backend = ScriptedBackend([
        "Caching the order reads in Redis would cut the p99 latency well below 900 ms.",
        "Caching the order reads in Redis would cut the p99 latency well below 900 ms.",
        "ok",
    ])
    db = tmp_path / "q.db"
    store, run_id, _ = run_events(
        db, "name: q\ngoal: Decide on a Redis cache for the orders API.\ncontext: p99 is 900 ms.\n"
        "guard: {enabled: false}\npersonas:\n  - {name: A, system: a}\n  - {name: B, system: b}\n"
        "termination: {max_turns: 3}\n", backend,
    )
    verdicts = [s.failures for s in score_run(store, run_id)]
    assert verdicts == [[], ["copy"], ["empty", "off_topic"]]
    done = subprocess.run(personae_cmd("score", str(run_id), "--db", str(db), "--format", "json"),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["summary"]["good"] == 1 and payload["summary"]["replies"] == 3
    table = subprocess.run(personae_cmd("score", str(run_id), "--db", str(db), "--format", "table"),
                           env=cli_env, capture_output=True, text=True, timeout=120)
    assert "1/3 good" in table.stdout and "copy" in table.stdout
