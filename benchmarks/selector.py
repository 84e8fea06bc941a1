"""The LLM selector on the embedded model: how often does its answer need the fallback?

Run from the repository root, in the project venv:

    python benchmarks/selector.py                   # 200 selector calls, 40 re-asked unconstrained
    python benchmarks/selector.py --calls 40 --compare 0

Router runs on the bundled SmolLM2-135M (the real embedded backend) with no rules, so the model
chooses every speaker that is not forced: each turn it picks from the personas that
``allowed_transitions`` lets follow the previous one (two or three names). Runs of ``--run-turns``
turns are started until ``--calls`` selector calls were made. Persona replies are kept tiny
(``num_predict`` 12): the turns exist only to give the selector a changing transcript.

Everything is then read back from the database, not from memory: every ``llm_calls`` row with
purpose ``select``, and every message's ``meta["route"]``. It checks that each chosen speaker is a
roster name allowed after the previous speaker (exit 1 if not), and prints the share of answers that
needed the fallback (invalid or disallowed) and the share salvaged from a reply cut off after a
complete ``next`` field.

``--compare N`` re-sends the first N stored selection prompts without the JSON Schema — the way
selectors work when the server does not constrain the output — and counts an answer as usable only
if it names exactly one allowed persona, which is what AutoGen's SelectorGroupChat requires. The two
shares are printed side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROSTER = ["Planner", "Analyst", "Critic", "Summarizer"]
TRANSITIONS = {
    "Planner": ["Analyst", "Critic"],
    "Analyst": ["Critic", "Planner", "Summarizer"],
    "Critic": ["Planner", "Analyst"],
    "Summarizer": ["Planner", "Critic"],
}

SCENARIO = """
name: selector-benchmark
goal: Decide whether the orders API needs a Redis cache, and how to roll it out safely.
context: |
  The orders API serves 1,200 requests per second at peak; p99 latency is 900 ms against a target
  of 300 ms. The PostgreSQL primary runs at 85% CPU. About 80% of requests read recent orders.
personas:
  - {name: Planner, description: Turns the discussion into numbered steps with owners.,
     system: Propose the next concrete step., options: {num_predict: 12}}
  - {name: Analyst, description: Brings numbers and estimates from the context.,
     system: Do one piece of arithmetic from the context., options: {num_predict: 12}}
  - {name: Critic, description: Finds the weakest claim and the risk behind it.,
     system: Name the biggest risk in the last message., options: {num_predict: 12}}
  - {name: Summarizer, description: States what was agreed and what is still open.,
     system: Sum up in one sentence., options: {num_predict: 12}}
policy:
  type: router
  selector: llm
  default: Analyst
  allow_repeat: false
  allowed_transitions:
    Planner: [Analyst, Critic]
    Analyst: [Critic, Planner, Summarizer]
    Critic: [Planner, Analyst]
    Summarizer: [Planner, Critic]
memory: {num_ctx: 2048, collapse: null}
termination: {max_turns: MAX_TURNS}
"""


def allowed_after(previous: str | None) -> list[str]:
    if previous is None:
        return list(ROSTER)
    return [n for n in TRANSITIONS[previous] if n != previous]


def free_text_choice(text: str, allowed: list[str]) -> str | None:
    """AutoGen-style: the reply must mention exactly one candidate name."""
    named = [n for n in allowed if n.lower() in text.lower()]
    return named[0] if len(named) == 1 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="selector calls to make")
    parser.add_argument("--run-turns", type=int, default=25, help="turns per router run")
    parser.add_argument("--compare", type=int, default=40, help="prompts re-asked unconstrained")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="keep the database here (default: a temp dir)")
    args = parser.parse_args()

    from personae.config import load_scenario_text
    from personae.llm.base import ChatMessage, ChatRequest
    from personae.llm.embedded import EmbeddedBackend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.orchestrator.selector import read_choice
    from personae.store.repo import Store

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp()) / "selector.db"
    backend = EmbeddedBackend(num_ctx=2048)
    store = Store.open(db)
    run_ids: list[int] = []
    made = 0
    started = time.perf_counter()
    while made < args.calls:
        turns = min(args.run_turns, args.calls - made)
        loaded = load_scenario_text(SCENARIO.replace("MAX_TURNS", str(turns)))
        settings = settings_for(loaded, backend, seed=args.seed + 1000 * len(run_ids))
        run_id = start_run(store, loaded, backend, settings)
        run_ids.append(run_id)
        for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
            pass
        made += len(store.calls(run_id, "select"))
        print(f"run {run_id}: {made}/{args.calls} selector calls, "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)

    # -- read it all back from the database ------------------------------------------------
    calls = [c for r in run_ids for c in store.calls(r, "select")]
    routes, violations = [], []
    for run_id in run_ids:
        previous = None
        for m in store.messages(run_id):
            route = (m.meta or {}).get("route", {})
            if route.get("by") == "selector":
                routes.append(route)
            if m.persona not in ROSTER or m.persona not in allowed_after(previous):
                violations.append((run_id, m.turn, previous, m.persona))
            previous = m.persona
    chosen = Counter(
        m.persona for r in run_ids for m in store.messages(r) if (m.meta or {}).get("route", {}).get("by") == "selector"
    )
    fallback = sum(1 for r in routes if r.get("fallback"))
    partial = sum(1 for r in routes if r.get("partial"))
    elapsed = time.perf_counter() - started

    print(f"\nSelector on {backend.model} (embedded), {len(calls)} calls in {len(run_ids)} runs, "
          f"{elapsed:.0f} s; database {db}")
    print(f"  chosen speakers outside the roster or the transitions: {len(violations)}")
    print(f"  answers that needed the fallback:  {fallback}/{len(routes)} = {fallback / max(1, len(routes)):.1%}")
    print(f"  answers cut off after a complete `next` (used): {partial}/{len(routes)} = "
          f"{partial / max(1, len(routes)):.1%}")
    print(f"  chosen: {dict(chosen.most_common())}")
    walls = [c.wall_ns / 1e9 for c in calls]
    print(f"  per selector call: {statistics.mean(walls):.2f} s mean, {statistics.median(walls):.2f} s median; "
          f"prompt {statistics.mean(c.prompt_tokens for c in calls):.0f} tokens, of which "
          f"{statistics.mean(c.evaluated_tokens for c in calls):.0f} evaluated (the rest reused from "
          f"the previous turn's prefix); {statistics.mean(c.completion_tokens for c in calls):.0f} generated")

    if args.compare:
        usable_free = usable_json = 0
        sample = calls[: args.compare]
        for call in sample:
            names = list(call.schema["properties"]["next"]["enum"])
            messages = tuple(ChatMessage(m["role"], m["content"]) for m in call.prompt)
            free = backend.chat(ChatRequest(messages=messages, options=dict(call.options)))
            name, _, _, _ = read_choice(free.text.strip(), names)
            usable_free += (name or free_text_choice(free.text, names)) is not None
            usable_json += read_choice((call.response or "").strip(), names)[0] is not None
        n = len(sample)
        print(f"\nSame {n} prompts, side by side:")
        print(f"  {'':<34}{'usable':>10}{'needs fallback':>16}")
        print(f"  {'JSON Schema (enum of names)':<34}{usable_json / n:>10.1%}{1 - usable_json / n:>16.1%}")
        print(f"  {'free text, exactly one name':<34}{usable_free / n:>10.1%}{1 - usable_free / n:>16.1%}")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
