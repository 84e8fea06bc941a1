"""Durable runs: what replay, resume and shared databases cost, side by side.

Run from the repository root, in the project venv:

    python benchmarks/durable.py                       # the embedded model, 8 turns
    python benchmarks/durable.py --turns 12 --num-predict 32 --writers 4

1. A live run on the embedded model against ``personae replay`` of the same run (the recorded
   replies, no model): wall time of each and the ratio.
2. Resuming: the time from opening the database to the first prompt of the next turn (scenario
   and frozen personas reloaded, transcript read back, prompt rebuilt), without the model load,
   which a fresh run pays too.
3. One database file shared by N writer processes (scripted model, so only the database is
   measured) against one writer: committed turns per second, and whether any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from personae.config import load_scenario_text
from personae.orchestrator.replay import replay_run
from personae.orchestrator.resume import reload_scenario, run_settings
from personae.orchestrator.run import (
    Orchestrator,
    load_history,
    settings_for,
    start_run,
)
from personae.orchestrator.state import RunState, TurnPlan
from personae.store.repo import Store


def scenario(turns: int, num_predict: int) -> str:
    persona = "  - {{name: {n}, description: {d}, system: {s}, options: {{num_predict: NP}}}}\n"
    persona = persona.replace("NP", str(num_predict))
    return (
        "name: bench\ngoal: Decide whether the orders API needs a Redis cache.\n"
        "context: p99 is 900 ms at 1,200 requests a second; the database CPU is at 85%.\n"
        "personas:\n"
        + persona.format(n="Planner", d="plans", s="Propose a concrete step.")
        + persona.format(n="Analyst", d="numbers", s="Bring one number.")
        + persona.format(n="Critic", d="flaws", s="Name one risk.")
        + f"options: {{temperature: 0}}\nmemory: {{num_ctx: 2048, collapse: null}}\n"
        f"termination: {{max_turns: {turns}}}\n"
    )


def live_vs_replay(folder: Path, turns: int, num_predict: int) -> tuple[float, float, bool, float]:
    from personae.llm.embedded import EmbeddedBackend

    backend = EmbeddedBackend(num_ctx=2048)
    loaded = load_scenario_text(scenario(turns, num_predict), base_dir=folder)
    store = Store.open(folder / "bench.db")
    settings = settings_for(loaded, backend, seed=7)
    run_id = start_run(store, loaded, backend, settings)
    started = time.perf_counter()
    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
        pass
    live = time.perf_counter() - started
    backend.close()

    started = time.perf_counter()
    report = replay_run(store, run_id)
    replayed = time.perf_counter() - started

    started = time.perf_counter()
    row = store.run(run_id)
    reloaded = reload_scenario(store, row)
    again = run_settings(row, reloaded, _Counter())
    orchestrator = Orchestrator(reloaded, _Counter(), store, again)
    history = tuple(load_history(store, run_id))
    state = RunState(run_id, history)
    speaker = orchestrator.policy.next_speaker(state.history) or TurnPlan("Planner")
    orchestrator._prompt(state, speaker)  # the prompt the next turn would send
    resume = time.perf_counter() - started
    store.close()
    return live, replayed, report.identical, resume


class _Counter:
    """Token counts without a model (the resume measurement excludes the model load)."""

    name, model, num_ctx = "scripted", "none", 2048

    def count_tokens(self, messages):  # type: ignore[no-untyped-def]
        return sum(len(m.content.split()) for m in messages)

    def count_text_tokens(self, text):  # type: ignore[no-untyped-def]
        return len(text.split())

    def context_length(self):  # type: ignore[no-untyped-def]
        return 2048

    def chat(self, request, on_token=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("not used")

    def close(self):  # type: ignore[no-untyped-def]
        pass


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from personae.config import load_scenario_text
    from personae.llm.scripted import ScriptedBackend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.store.repo import Store
    text = "name: w\\ngoal: g\\npersonas: [Planner, Critic]\\nmemory: {{collapse: null}}\\ntermination: {{max_turns: {turns}}}\\n"
    loaded = load_scenario_text(text)
    backend = ScriptedBackend(default="a short reply of a few words")
    store = Store.open({db!r})
    settings = settings_for(loaded, backend)
    run_id = start_run(store, loaded, backend, settings)
    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
        pass
    """
)


def shared_database(folder: Path, writers: int, turns: int) -> tuple[float, int]:
    db = folder / f"shared-{writers}.db"
    Store.open(db).close()
    script = WRITER.format(repo=str(REPO), db=str(db), turns=turns)
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(writers)]
    failed = sum(p.wait() != 0 for p in processes)
    seconds = time.perf_counter() - started
    return writers * turns / seconds, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--num-predict", type=int, default=24)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--writer-turns", type=int, default=60)
    parser.add_argument("--skip-model", action="store_true", help="Only the database part.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_model:
            live, replayed, identical, resume = live_vs_replay(folder, args.turns, args.num_predict)
            print(f"{'':34}{'live run':>12}{'replay':>12}{'ratio':>10}")
            print(f"{f'{args.turns} turns, embedded model (s)':34}{live:12.2f}{replayed:12.2f}{live / replayed:9.1f}x")
            print(f"replay reports identical prompts: {identical}")
            print(f"resume, database to next prompt (no model load): {resume * 1000:.0f} ms\n")
        one, failed_one = shared_database(folder, 1, args.writer_turns)
        many, failed_many = shared_database(folder, args.writers, args.writer_turns)
        print(f"{'':34}{'1 writer':>12}{f'{args.writers} writers':>12}{'ratio':>10}")
        print(f"{'committed turns per second':34}{one:12.1f}{many:12.1f}{many / one:9.2f}x")
        print(f"{'failed writer processes':34}{failed_one:12d}{failed_many:12d}")


if __name__ == "__main__":
    main()
