"""Four deliberations at once on one loaded embedded model, against the same four one after another.

    python benchmarks/parallel.py                      # 4 runs of cache-review, 4 turns each
    python benchmarks/parallel.py --runs 4 --turns 6 --scenario scenarios/cache-review.yaml

One ``EmbeddedBackend`` with ``--runs`` slots loads the model once. First the runs go one after
another, run i pinned to slot i (``backends.pinned``); then the same runs (same seeds, so the same
replies at temperature 0) go at once, one thread each, each pinned to its slot. Printed: the
aggregate generated tokens per second of both, their ratio, and each run's evaluated prompt tokens
in both modes: slot affinity keeps each run's cached prefix, so they must agree within 10%.
Wall times on a shared 2-core machine are noisy: compare the ratio within one invocation.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from personae.config import load_scenario
from personae.llm.backends import pinned
from personae.llm.base import Backend
from personae.llm.embedded import EmbeddedBackend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.repo import Store


def one_run(db: Path, scenario: Path, backend: Backend, seed: int, turns: int) -> tuple[int, int]:
    """(evaluated prompt tokens, generated tokens) of one deliberation, from its stored calls."""
    loaded = load_scenario(scenario)
    store = Store.open(str(db))  # made in the calling thread before any run starts (see main)
    try:
        settings = settings_for(loaded, backend, seed=seed, max_turns=turns)
        run_id = start_run(store, loaded, backend, settings)
        for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
            pass
        calls = store.calls(run_id)
        return sum(c.evaluated_tokens for c in calls), sum(c.completion_tokens for c in calls)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/cache-review.yaml"))
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    num_ctx = load_scenario(args.scenario).scenario.memory.num_ctx or 4096
    backend = EmbeddedBackend(num_ctx=num_ctx, slots=args.runs)
    work = Path(tempfile.mkdtemp(prefix="personae-parallel-"))
    try:
        started = time.perf_counter()
        sequential = [
            one_run(work / f"seq{i}.db", args.scenario, pinned(backend, i), seed=i + 1, turns=args.turns)
            for i in range(args.runs)
        ]
        seq_seconds = time.perf_counter() - started
        # The same runs again, at once, on fresh databases and a freshly loaded model, so that
        # both passes start with cold caches.
        backend.close()
        backend = EmbeddedBackend(num_ctx=num_ctx, slots=args.runs)
        concurrent: list[tuple[int, int]] = [(0, 0)] * args.runs
        # Alembic's migration of a new database is not thread-safe (a module-level proxy): make
        # each database in this thread first; the threads then open upgraded files.
        for i in range(args.runs):
            Store.open(str(work / f"par{i}.db")).close()

        def go(i: int) -> None:
            concurrent[i] = one_run(work / f"par{i}.db", args.scenario, pinned(backend, i), seed=i + 1, turns=args.turns)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(args.runs)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        par_seconds = time.perf_counter() - started
    finally:
        backend.close()
    seq_rate = sum(g for _, g in sequential) / seq_seconds
    par_rate = sum(g for _, g in concurrent) / par_seconds
    print(f"{args.runs} runs × {args.turns} turns of {args.scenario.name}, one model, {args.runs} slots")
    print(f"one after another: {sum(g for _, g in sequential)} tokens generated in {seq_seconds:.1f} s = {seq_rate:.1f} tok/s")
    print(f"at once:           {sum(g for _, g in concurrent)} tokens generated in {par_seconds:.1f} s = {par_rate:.1f} tok/s")
    print(f"aggregate throughput ratio (at once / one after another): {par_rate / seq_rate:.2f}")
    print("run  evaluated(seq)  evaluated(at once)  difference")
    worst = 0.0
    for i, ((seq_eval, _), (par_eval, _)) in enumerate(zip(sequential, concurrent)):
        diff = abs(par_eval - seq_eval) / max(1, seq_eval)
        worst = max(worst, diff)
        print(f"{i:>3}  {seq_eval:>14}  {par_eval:>18}  {diff:>9.1%}")
    print(f"slot affinity: worst difference {worst:.1%} ({'within' if worst <= 0.10 else 'NOT within'} 10%)")


if __name__ == "__main__":
    main()
