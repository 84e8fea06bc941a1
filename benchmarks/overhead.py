"""Framework overhead: what Personae itself costs per turn when the model answers instantly.

Run from the repository root, in the project venv:

    python benchmarks/overhead.py                 # 1,000 turns; AutoGen beside it if installed
    python benchmarks/overhead.py --turns 300 --no-autogen
    python benchmarks/overhead.py --collapse      # per-turn cost at turns 100, 1,000, 3,000
    python benchmarks/overhead.py --collapse --against ../main   # the same, beside another checkout

Personae runs its real loop — stop rules, policy, prompt build with the manifest, reply parsing and
the SQLite commit of every turn (message + llm_call + memory-graph node and edges + run totals, one
transaction, WAL, a file in a temp dir) — against ``ScriptedBackend``, which replies at once with a fixed 40-word message. Each
turn's time is measured from the end of the previous turn to the end of this one; the scripted
backend's own time (its replies, and its tokenizer: a whitespace split of the whole prompt for
every ``count_tokens``, which a real backend does in C or not at all) is measured separately and
subtracted, so "Personae's work" is what is left. On a machine shared with other
work, wall time includes waiting for a core; the CPU time of the process per turn
(``time.process_time``) is reported beside it and is the steadier figure.

AutoGen AgentChat runs the same shape beside it — RoundRobinGroupChat of four AssistantAgents, each
on a ``ReplayChatCompletionClient`` that returns the same message — in the peers venv that
``peers.py`` creates (``benchmarks/.venv-peers``), as a subprocess (``peer_autogen_replay.py``).
AutoGen keeps the transcript in memory and writes nothing to disk; Personae's figure includes a
durable commit per turn.

Each measurement runs in a fresh process, so peak RSS (``ru_maxrss``) is that framework's own.
The window is 4,096 tokens and collapse is off, so after ~80 turns every prompt is a full window
with the oldest turns dropped: the steady state of a long run.

``--collapse`` measures what a long deliberation costs instead: collapse on (a 2,048-token window,
so a collapse every few dozen turns; the scripted summarizer's answer is not JSON, so each collapse
takes the fallback path, which writes the same graph edit as a model's answer), 3,000 turns, and the
median CPU time per turn of the 50 turns ending at turns 100, 1,000 and 3,000 — flat means the
per-turn cost does not grow with the transcript or the memory graph. ``--against DIR`` runs the
same child with another checkout's ``personae`` package (its ``PYTHONPATH``) beside this one,
alternating, so a before/after comparison is measured in one run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers_env import ensure_peers, median, peers_python, percentile  # noqa: E402

REPLY = (
    "The cache pays off only if the hit rate stays above sixty percent: at 1,200 requests per "
    "second that removes about 700 reads from the primary. Measure the hit rate on a shadow "
    "cache for one week before we commit to the rollout."
)
PERSONAS = ("Analyst", "Critic", "Planner", "Summarizer")


CHECKPOINTS = (100, 1000, 3000)
WINDOW = 50  # turns per checkpoint median


def scenario_text(turns: int, collapse: bool = False) -> str:
    personas = "\n".join(
        f"  - {{name: {n}, description: the {n.lower()}, system: You are the {n}. Be concrete., "
        f"options: {{num_predict: 64}}}}"
        for n in PERSONAS
    )
    return (
        "name: overhead\ngoal: Decide whether the orders API needs a Redis cache.\n"
        "context: p99 latency is 900 ms at 1,200 requests per second.\n"
        f"personas:\n{personas}\n"
        + ("memory: {num_ctx: 2048, collapse: {keep_recent: 4}}\n" if collapse
           else "memory: {num_ctx: 4096, collapse: null}\n")
        + f"termination: {{max_turns: {turns}}}\n"
    )


class TimedBackend:
    """Delegates to the scripted backend and adds up the time spent inside it: its replies and its
    tokenizer (the whitespace split of whole prompts that a real backend does in C or on a server)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.spent_ns = 0
        self.spent_cpu_ns = 0

    def _timed(self, call: Any, *args: Any) -> Any:
        started, started_cpu = time.perf_counter_ns(), time.process_time_ns()
        try:
            return call(*args)
        finally:
            self.spent_ns += time.perf_counter_ns() - started
            self.spent_cpu_ns += time.process_time_ns() - started_cpu

    def chat(self, request: Any, on_token: Any = None) -> Any:
        return self._timed(self.inner.chat, request, on_token)

    def count_tokens(self, messages: Any) -> int:
        return self._timed(self.inner.count_tokens, messages)

    def count_text_tokens(self, text: str) -> int:
        return self._timed(self.inner.count_text_tokens, text)

    def context_length(self) -> int | None:
        return self.inner.context_length()

    def close(self) -> None:
        self.inner.close()


def personae_child(turns: int, collapse: bool = False) -> dict[str, Any]:
    from personae.config import load_scenario_text
    from personae.llm.scripted import ScriptedBackend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.orchestrator.state import TurnDone
    from personae.store.repo import Store

    workdir = Path(tempfile.mkdtemp(prefix="personae-overhead-"))
    loaded = load_scenario_text(scenario_text(turns, collapse), base_dir=workdir)
    backend = TimedBackend(ScriptedBackend(default=REPLY, num_ctx=2048 if collapse else 4096))
    per_turn, per_turn_own, per_turn_cpu = [], [], []
    with Store.open(workdir / "overhead.db") as store:
        settings = settings_for(loaded, backend)  # type: ignore[arg-type]
        run_id = start_run(store, loaded, backend, settings)  # type: ignore[arg-type]
        orchestrator = Orchestrator(loaded, backend, store, settings)  # type: ignore[arg-type]
        last, last_backend = time.perf_counter_ns(), 0
        last_cpu, last_backend_cpu = time.process_time_ns(), 0
        started = last
        for event in orchestrator.run(run_id):
            if isinstance(event, TurnDone):
                now, now_cpu = time.perf_counter_ns(), time.process_time_ns()
                per_turn.append((now - last) / 1e6)
                per_turn_own.append((now - last - (backend.spent_ns - last_backend)) / 1e6)
                per_turn_cpu.append((now_cpu - last_cpu - (backend.spent_cpu_ns - last_backend_cpu)) / 1e6)
                last, last_backend = now, backend.spent_ns
                last_cpu, last_backend_cpu = now_cpu, backend.spent_cpu_ns
        total = (time.perf_counter_ns() - started) / 1e9
        stored = len(store.messages(run_id))
    return {
        "framework": "personae",
        "turns": len(per_turn),
        "stored_messages": stored,
        "total_s": total,
        "median_ms": median(per_turn_own),
        "p99_ms": percentile(per_turn_own, 99),
        "cpu_median_ms": median(per_turn_cpu),
        "cpu_p99_ms": percentile(per_turn_cpu, 99),
        "median_with_backend_ms": median(per_turn),
        "p99_with_backend_ms": percentile(per_turn, 99),
        "first_100_median_ms": median(per_turn_own[:100]),
        "last_100_median_ms": median(per_turn_own[-100:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_at": {
            str(n): median(per_turn_cpu[n - WINDOW:n]) for n in CHECKPOINTS if len(per_turn_cpu) >= n
        },
    }


def collapse_main(turns: int, reps: int, against: Path | None) -> None:
    """Per-turn CPU cost at the checkpoints with collapse on; beside ``against`` when given."""
    import os

    command = [sys.executable, __file__, "--child", "personae", "--collapse", "--turns", str(turns)]
    contestants: dict[str, dict[str, str]] = {"this checkout": dict(os.environ)}
    if against is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(against.resolve())
        contestants[f"{against}"] = env
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    for rep in range(reps):
        names = list(contestants)
        names = names[rep % len(names):] + names[: rep % len(names)]  # A/B alternated
        for name in names:
            result = run_child(command, env=contestants[name])
            results[name].append(result)
            cells = ", ".join(f"turn {k}: {v:.2f} ms" for k, v in result["cpu_at"].items())
            print(f"rep {rep + 1} {name}: CPU per turn {cells}; total {result['total_s']:.0f} s",
                  flush=True)
    print()
    print(f"collapse on, {turns} turns, median CPU ms per turn of the {WINDOW} turns ending at")
    shown = [n for n in CHECKPOINTS if n <= turns]
    print("| personae | " + " | ".join(f"turn {n:,}" for n in shown) + " | last / first |")
    print("|---|" + "---|" * (len(shown) + 1))
    for name, runs in results.items():
        cells = [median([r["cpu_at"][str(n)] for r in runs]) for n in shown]
        ratio = cells[-1] / cells[0] if cells and cells[0] else float("nan")
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {ratio:.2f} |")


def run_child(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        raise RuntimeError((done.stdout + done.stderr)[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-turn framework overhead with an instant model.")
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3, help="Fresh-process repetitions of each.")
    parser.add_argument("--no-autogen", action="store_true")
    parser.add_argument("--collapse", action="store_true",
                        help="Collapse on: per-turn cost at turns 100, 1,000 and 3,000.")
    parser.add_argument("--against", type=Path, default=None,
                        help="With --collapse: also run another checkout's personae, alternating.")
    parser.add_argument("--child", choices=["personae"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(personae_child(args.turns, args.collapse)))
        return
    if args.collapse:
        turns = args.turns if "--turns" in sys.argv else max(CHECKPOINTS)
        collapse_main(turns, args.reps, args.against)
        return

    contestants: dict[str, list[str]] = {
        "Personae (policy, prompt, parse, SQLite commit)": [
            sys.executable, __file__, "--child", "personae", "--turns", str(args.turns)
        ]
    }
    if not args.no_autogen:
        status = ensure_peers(["autogen"])["autogen"]
        if status.ok:
            contestants[f"AutoGen AgentChat ({status.detail}, replay client, in memory)"] = [
                str(peers_python()), str(HERE / "peer_autogen_replay.py"), "--turns", str(args.turns),
                "--reply", REPLY,
            ]
        else:
            print(f"AutoGen left out: {status.detail}")

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    for rep in range(args.reps):
        names = list(contestants)
        names = names[rep % len(names):] + names[: rep % len(names)]  # A/B alternated
        for name in names:
            result = run_child(contestants[name])
            results[name].append(result)
            print(f"rep {rep + 1} {name}: median {result['median_ms']:.3f} ms/turn, "
                  f"p99 {result['p99_ms']:.3f} ms, CPU median {result['cpu_median_ms']:.3f} ms, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)

    print()
    print(f"{args.turns} turns, 4 personas, medians of {args.reps} fresh processes")
    print("| framework | median ms/turn | p99 ms/turn | CPU median ms | CPU p99 ms | "
          "first 100 turns | last 100 turns | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        if not runs:
            continue
        cells = [
            median([r["median_ms"] for r in runs]), median([r["p99_ms"] for r in runs]),
            median([r["cpu_median_ms"] for r in runs]), median([r["cpu_p99_ms"] for r in runs]),
            median([r["first_100_median_ms"] for r in runs]), median([r["last_100_median_ms"] for r in runs]),
        ]
        rss = median([r["peak_rss_mb"] for r in runs])
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {rss:.0f} |")
    personae_runs = next(iter(results.values()))
    if personae_runs:
        with_backend = median([r["median_with_backend_ms"] for r in personae_runs])
        print(f"Personae with the scripted backend's own time included: median {with_backend:.3f} ms/turn.")
    out = HERE / ".results" / "overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"all numbers: {out}")


if __name__ == "__main__":
    main()
