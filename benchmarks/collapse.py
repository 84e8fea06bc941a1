"""Collapse→rebuild against plain truncation: prompt size per turn and tokens evaluated.

Run from the repository root, in the project venv:

    python benchmarks/collapse.py                          # the embedded model, 200 turns each
    python benchmarks/collapse.py --backend scripted       # no model: the framework alone
    python benchmarks/collapse.py --turns 60 --num-ctx 1024
    python benchmarks/collapse.py --threads 1 --parallel   # on a machine busy with other work

Two runs of the same scenario — the four built-in personas, round robin, replies capped at
``--num-predict`` tokens, a ``--num-ctx`` window — one with ``memory.collapse`` on (defaults:
at 60% of the window, keep 4 recent messages) and one with it off, where the only thing that keeps
the prompt inside the window is dropping the oldest turns (recorded as ``last_resort`` in the
manifest). Printed side by side, with the ratio (without / with): the prompt tokens of each turn
(first, median, max), the total tokens the model had to evaluate (turn calls, and for the collapse
run its collapse calls as well), the turns that had to drop history, and the wall time.

Truncation drops text at the *front* of the transcript, so from the moment the window is full
every prompt differs from the last one early on and the server re-reads almost all of it; collapse
keeps the memory block fixed between collapses, so most turns re-read only the newest message.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personae.config import load_scenario_text  # noqa: E402
from personae.llm.base import Backend, ChatRequest  # noqa: E402
from personae.orchestrator.run import Orchestrator, settings_for, start_run  # noqa: E402
from personae.orchestrator.state import Collapsed  # noqa: E402
from personae.store.repo import Store  # noqa: E402

SCENARIO = """name: collapse-benchmark
goal: Decide whether the orders API needs a Redis cache, and how to roll it out safely.
context: |
  The orders API serves 1,200 requests per second at peak; p99 latency is 900 ms against a
  target of 300 ms. The PostgreSQL primary runs at 85% CPU at peak.
personas:
  - {{name: Planner, extends: Planner, options: {{num_predict: {n}}}}}
  - {{name: Analyst, extends: Analyst, options: {{num_predict: {n}}}}}
  - {{name: Critic, extends: Critic, options: {{num_predict: {n}}}}}
  - {{name: Summarizer, extends: Summarizer, options: {{num_predict: {n}}}}}
policy: {{type: round_robin}}
memory:
  num_ctx: {ctx}
  collapse: {collapse}
termination: {{max_turns: {turns}}}
"""
COLLAPSE = "{at_fraction: 0.6, keep_recent: 4, max_tokens: 160}"


def scripted(num_ctx: int, words: int, seed: int) -> Backend:
    """A stand-in model: replies of ``words`` words; collapse answers valid for their schema."""
    from personae.llm.scripted import ScriptedBackend

    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(2000)]

    def reply(request: ChatRequest) -> str:
        if request.schema is None:
            return " ".join(rng.choice(vocabulary) for _ in range(words))
        answer: dict[str, Any] = {"summary": " ".join(rng.choice(vocabulary) for _ in range(25))}
        props = request.schema["properties"]
        if "facts" in props:
            turns = props["facts"]["items"]["properties"]["turns"]["items"]["enum"]
            item = {"text": " ".join(rng.choice(vocabulary) for _ in range(10)), "turns": [turns[0]]}
            answer |= {"facts": [item], "decisions": [], "open_questions": []}
        return json.dumps(answer)

    return ScriptedBackend(default=reply, num_ctx=num_ctx)


def one_run(backend: Backend, text: str, store: Store, seed: int) -> dict[str, Any]:
    loaded = load_scenario_text(text, base_dir=Path(store.path).parent)
    settings = settings_for(loaded, backend, seed=seed)
    run_id = start_run(store, loaded, backend, settings)
    started = time.perf_counter()
    collapses = sum(
        isinstance(e, Collapsed) for e in Orchestrator(loaded, backend, store, settings).run(run_id)
    )
    wall = time.perf_counter() - started
    turns = store.calls(run_id, "turn")
    other = store.calls(run_id, "collapse")
    sizes = [c.prompt_tokens for c in turns]
    return {
        "turns": len(turns),
        "first": sizes[0],
        "median": statistics.median(sizes),
        "max": max(sizes),
        "evaluated": sum(c.evaluated_tokens for c in turns + other),
        "evaluated_turns": sum(c.evaluated_tokens for c in turns),
        "collapses": collapses,
        "collapse_calls": len(other),
        "truncated": sum(
            any(e.get("last_resort") for e in c.manifest) for c in turns
        ),
        "over_window": sum(c.prompt_tokens + c.options["num_predict"] > c.options["num_ctx"]
                           for c in turns + other),
        "wall": wall,
    }


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "scripted":
        return scripted(args.num_ctx, int(args.num_predict * 0.75), args.seed)
    import os

    from personae.llm.embedded import EmbeddedBackend

    if args.threads:  # the engine reads its thread count when it loads the model
        os.environ["PERSONAE_THREADS"] = str(args.threads)
    return EmbeddedBackend(num_ctx=args.num_ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("embedded", "scripted"), default="embedded")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--num-ctx", type=int, default=2048)
    parser.add_argument("--num-predict", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="llama.cpp threads (default: the backend's). On a machine shared with other work, 1 "
        "avoids llama.cpp's threads spinning while they wait for each other.",
    )
    parser.add_argument(
        "--parallel", action="store_true",
        help="Run the two at once, each on its own thread (wall times then share the CPU).",
    )
    args = parser.parse_args()

    runs = (("with collapse", COLLAPSE), ("without (truncates)", "null"))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        # Opened (and migrated) here, one after the other: Alembic is not thread-safe.
        stores = [Store.open(Path(folder) / f"{index}.db") for index in range(2)]

        def measure(index: int) -> None:
            label, collapse = runs[index]
            backend = make_backend(args)
            text = SCENARIO.format(n=args.num_predict, ctx=args.num_ctx, collapse=collapse,
                                   turns=args.turns)
            print(f"running {label}: {args.turns} turns on {backend.name} ...", flush=True)
            results[label] = one_run(backend, text, stores[index], args.seed)
            backend.close()
            print(f"  {label}: {json.dumps(results[label])}", flush=True)

        if args.parallel:  # llama.cpp releases the GIL: two models, one per thread
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(measure, range(2)))
        else:
            for index in range(2):
                measure(index)
        for store in stores:
            store.close()

    a, b = results["with collapse"], results["without (truncates)"]
    rows = [
        ("turns completed", "turns", "{:.0f}"),
        ("prompt tokens/turn: first", "first", "{:.0f}"),
        ("prompt tokens/turn: median", "median", "{:.0f}"),
        ("prompt tokens/turn: max", "max", "{:.0f}"),
        ("evaluated tokens, total", "evaluated", "{:.0f}"),
        ("  of which persona turns", "evaluated_turns", "{:.0f}"),
        ("collapses (calls)", "collapses", "{:.0f}"),
        ("turns that dropped history", "truncated", "{:.0f}"),
        ("calls over the window", "over_window", "{:.0f}"),
        ("wall seconds", "wall", "{:.1f}"),
    ]
    print(f"\n{args.turns} turns, window {args.num_ctx}, replies <= {args.num_predict} tokens, "
          f"backend {args.backend}\n")
    print(f"{'':30} {'with collapse':>15} {'without':>15} {'ratio w/o÷with':>15}")
    for title, key, fmt in rows:
        left, right = a[key], b[key]
        if key == "collapses":
            left_text = f"{a['collapses']} ({a['collapse_calls']})"
        else:
            left_text = fmt.format(left)
        compared = key in ("first", "median", "max", "evaluated", "evaluated_turns", "wall")
        ratio = f"{right / left:.2f}" if compared and left else "-"
        print(f"{title:30} {left_text:>15} {fmt.format(right):>15} {ratio:>15}")


if __name__ == "__main__":
    main()
