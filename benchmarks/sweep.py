"""Sweep throughput: the same sweep with 1, 2, 4 and 8 runs at once, side by side in one run.

Run from the repository root, in the project venv:

    python benchmarks/sweep.py                         # scripted backend, 0.25 s per call
    python benchmarks/sweep.py --latency 0.1 --seeds 2
    python benchmarks/sweep.py --backend embedded      # the embedded engine's parallel slots

The sweep is 3 scenarios (cache-review, pricing-change, incident-postmortem) × 2 layouts ×
``--seeds`` seeds, ``--max-turns`` turns each, run through ``personae.batch`` exactly as
``personae batch`` runs it: worker threads, each run through the ordinary run loop on its own
store connection to one SQLite file (WAL, BEGIN IMMEDIATE).

With ``--backend scripted`` every model call sleeps ``--latency`` seconds and then answers, as a
server's wait would (the sleep releases the GIL, as waiting on a socket does). Whatever the
framework does around a call — building the prompt, committing the turn, taking the write lock —
adds up between calls; if it serialised the workers, 8 at once would not reach 8× sequential.
The target: 8 concurrent runs reach at least 5× the sequential turns/s.

With ``--backend embedded`` the workers call the embedded engine, loaded once per concurrency
with one parallel slot per worker; each worker is pinned to its slot through
``personae.batch.runner.worker_backend``, so each run keeps its cached prefix.

Printed: for each concurrency, wall seconds, turns, turns/s, completion tokens/s and prompt
tokens sent per second, and each against sequential (1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personae.batch.runner import RunFinished, TurnFinished, workers_for  # noqa: E402
from personae.batch.start import execute, plan_new  # noqa: E402
from personae.batch.sweep import Endpoint, load_sweep  # noqa: E402
from personae.llm.base import Backend, ChatRequest  # noqa: E402
from personae.llm.scripted import ScriptedBackend  # noqa: E402
from personae.store.repo import Store  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ["cache-review", "pricing-change", "incident-postmortem"]


def sweep_text(kind: str, concurrency: int, seeds: int, max_turns: int) -> str:
    listed = ", ".join(str(REPO / "scenarios" / f"{name}.yaml") for name in SCENARIOS)
    backend = "embedded" if kind == "embedded" else "ollama"  # scripted stands in for a server
    return (
        f"name: bench-{concurrency}\nscenarios: [{listed}]\n"
        f"vary: {{layout: [named, classic], seed: [{', '.join(str(s + 1) for s in range(seeds))}]}}\n"
        f"max_turns: {max_turns}\nendpoints: [{{backend: {backend}, concurrency: {concurrency}}}]\n"
    )


def opener(kind: str, latency: float, num_predict: int) -> Any:
    def reply(request: ChatRequest) -> str:
        time.sleep(latency)
        words = " ".join(f"point{i}" for i in range(num_predict // 2))
        return f"The cache question, seen from here: {words}."

    def open_backend(endpoint: Endpoint, model: str | None, num_ctx: int | None) -> Backend:
        if kind == "scripted":
            return ScriptedBackend(default=reply, num_ctx=num_ctx or 8192)
        from personae.llm.backends import open_backend as open_real

        gguf = model if model and model.endswith(".gguf") else None
        return open_real("embedded", gguf, num_ctx=num_ctx, slots=endpoint.concurrency)

    return open_backend


def measure(kind: str, concurrency: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    path = folder / f"sweep-{concurrency}.yaml"
    path.write_text(sweep_text(kind, concurrency, args.seeds, args.max_turns), encoding="utf-8")
    db = str(folder / f"bench-{concurrency}.db")
    store = Store.open(db)
    loaded = load_sweep(path)
    plan = plan_new(store, loaded)
    workers = workers_for(loaded.sweep.endpoints[0])
    turns = completion = sent = failed = 0
    start = time.perf_counter()
    for event in execute(store, db, plan, opener(kind, args.latency, args.num_predict)):
        if isinstance(event, TurnFinished):
            turns += 1
            completion += event.completion_tokens
            sent += event.prompt_tokens
        elif isinstance(event, RunFinished) and event.status != "completed":
            failed += 1
    seconds = time.perf_counter() - start
    store.close()
    return {
        "asked": concurrency, "workers": workers, "runs": len(plan.work), "failed": failed,
        "seconds": seconds, "turns": turns, "turns_s": turns / seconds,
        "completion_s": completion / seconds, "sent_s": sent / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["scripted", "embedded"], default="scripted")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per scripted call")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per scenario and layout")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--num-predict", type=int, default=60, help="scripted reply length, in words")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated; 1 is the baseline")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            rows.append(measure(args.backend, level, args, Path(tmp)))
            print(f"  {level} at once: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    base = rows[0]
    runs = int(base["runs"])
    print(
        f"sweep: 3 scenarios × 2 layouts × {args.seeds} seeds = {runs} runs of {args.max_turns} turns · "
        f"backend {args.backend}" + (f" · {args.latency} s per call" if args.backend == "scripted" else "")
    )
    header = f"{'asked':>5} {'workers':>7} {'wall s':>7} {'turns':>5} {'turns/s':>8} {'×':>5} "
    header += f"{'gen tok/s':>9} {'×':>5} {'sent tok/s':>10} {'×':>5} {'failed':>6}"
    print(header)
    for row in rows:
        print(
            f"{row['asked']:>5} {row['workers']:>7} {row['seconds']:>7.2f} {row['turns']:>5} "
            f"{row['turns_s']:>8.2f} {row['turns_s'] / base['turns_s']:>5.2f} "
            f"{row['completion_s']:>9.0f} {row['completion_s'] / base['completion_s']:>5.2f} "
            f"{row['sent_s']:>10.0f} {row['sent_s'] / base['sent_s']:>5.2f} {row['failed']:>6}"
        )


if __name__ == "__main__":
    main()
