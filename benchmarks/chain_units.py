"""Chain of agents chunk by chunk against section by section, side by side on one model.

Run from the repository root, in the project venv (personae[embedded,test] installed):

    python benchmarks/chain_units.py                     # the built-in chain-of-sections question
    python benchmarks/chain_units.py --seeds 1 2 3 --db units.db

The built-in ``chain-of-sections`` scenario (the keepers' log, seven windows long) runs once per
seed with ``unit: chunk`` and once with ``unit: section``, all else equal, the two interleaved so
that a busy machine slows both alike; each run is read back from its database:

- **turns** (worker turns and the manager's), **prompt tokens** and **evaluated tokens** summed over
  every call, and the largest prompt against the window less the reply (it must never pass it);
- **seconds**: the sum of the calls' wall time, reported as the section/chunk ratio of one process;
- **answer**: whether the manager's answer names the cracked part (the burner), who ordered it
  (Duncan Ross) and the company (Chance Brothers) — checked by words, so a 135M model's answer
  gets credit only for what it says.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from personae.config import builtin_dir, load_scenario_text
from personae.llm.backends import open_backend
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.store.repo import Store

FACTS = {"part": r"\bburner\b", "who": r"\bRoss\b", "company": r"\bChance\b"}


@dataclass
class Measured:
    unit: str
    seed: int
    turns: int
    prompt_tokens: int
    evaluated_tokens: int
    largest_prompt: int
    limit: int
    seconds: float
    answer: str

    def named(self) -> dict[str, bool]:
        return {fact: bool(re.search(rx, self.answer, re.I)) for fact, rx in FACTS.items()}


def with_unit(text: str, unit: str) -> str:
    return re.sub(r"unit: \w+", f"unit: {unit}", text, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--model", default=None)
    parser.add_argument("--db", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    path = builtin_dir() / "scenarios" / "chain-of-sections.yaml"
    text = path.read_text(encoding="utf-8")
    folder = Path(tempfile.mkdtemp(prefix="chain-units-"))
    db = args.db or folder / "units.db"
    rows: list[Measured] = []
    base = load_scenario_text(text, path=path)
    backend = open_backend(args.backend, args.model, num_ctx=base.scenario.memory.num_ctx)
    try:
        with Store.open(db) as store:
            for seed in args.seeds:
                for unit in ("chunk", "section"):
                    loaded = load_scenario_text(with_unit(text, unit), path=path)
                    settings = settings_for(loaded, backend, seed=seed)
                    run_id = start_run(store, loaded, backend, settings)
                    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
                        pass
                    calls = store.calls(run_id)
                    messages = store.messages(run_id)
                    reply = max(int(c.options.get("num_predict") or 0) for c in calls)
                    rows.append(Measured(
                        unit, seed, len(messages), sum(c.prompt_tokens for c in calls),
                        sum(c.evaluated_tokens for c in calls), max(c.prompt_tokens for c in calls),
                        settings.num_ctx - reply, sum(c.wall_ns for c in calls) / 1e9,
                        messages[-1].content if messages else "",
                    ))
                    print(rows[-1], flush=True)
    finally:
        backend.close()
    print(f"\nruns in {db}\n")
    print("| unit | seed | turns | prompt tokens | evaluated tokens | largest prompt / limit | seconds | part | who | company |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        named = r.named()
        print(f"| {r.unit} | {r.seed} | {r.turns} | {r.prompt_tokens:,} | {r.evaluated_tokens:,} | "
              f"{r.largest_prompt} / {r.limit} | {r.seconds:.1f} | "
              + " | ".join("yes" if named[f] else "no" for f in FACTS) + " |")
    for unit in ("chunk", "section"):
        for r in (r for r in rows if r.unit == unit):
            print(f"{unit} seed {r.seed} answer: {r.answer!r}")
    chunk = [r for r in rows if r.unit == "chunk"]
    section = [r for r in rows if r.unit == "section"]
    if chunk and section:
        def ratio(field: str) -> float:
            return sum(getattr(r, field) for r in section) / max(1e-9, sum(getattr(r, field) for r in chunk))
        print(f"\nsection / chunk: turns {ratio('turns'):.2f}, prompt tokens {ratio('prompt_tokens'):.2f}, "
              f"evaluated tokens {ratio('evaluated_tokens'):.2f}, seconds {ratio('seconds'):.2f}")


if __name__ == "__main__":
    main()
