"""BM25 against Generative-Agents ranking of the memory block, on one long run each.

Run from the repository root, in the project venv (personae[embedded,test] installed):

    python benchmarks/ranking.py                    # the built-in generative-memory scenario
    python benchmarks/ranking.py my.yaml --seeds 1 2 3 --max-turns 40
    python benchmarks/ranking.py --rankings generative --db g.db   # one ranking a process
    python benchmarks/ranking.py --report b.db g.db                # the table of stored runs

The same scenario runs once per ranking and seed (``memory.ranking`` replaced in its text, all
else equal), on the embedded model unless ``--backend`` says otherwise, and each run is read back
from its database:

- **facts kept**: of the User's scripted inputs (facts dropped along the way, not pinned), how
  many are still in the last turn's prompt — at least half of their content words present (the
  collapse may reword them; after collapses they survive only in the memory block);
- **quality**: the share of good replies (``personae.quality``, as ``personae score``);
- **tokens**: evaluated tokens per persona turn, and all tokens the importance ratings cost.

Token counts are exact; the fact and quality counts of a few runs of a 135M model are noisy, so
the table prints a Wilson 95% interval for the pooled share of facts kept.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from personae.config import builtin_dir, load_scenario, load_scenario_text
from personae.llm.backends import open_backend
from personae.memory.retrieval import query_terms
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.quality import summarize
from personae.quality.runs import score_run
from personae.store.repo import Store

RANKINGS = {
    "bm25": "{type: bm25}",
    "generative": "{type: generative, recency: 1.0, importance: 1.0, relevance: 1.0, decay: 0.95}",
}


def with_ranking(text: str, ranking: str) -> str:
    """The scenario text with its ``memory.ranking`` line replaced (or added under ``memory:``)."""
    if re.search(r"(?m)^  ranking:", text):
        return re.sub(r"(?m)^  ranking:.*$", f"  ranking: {ranking}", text)
    return re.sub(r"(?m)^memory:\s*$", f"memory:\n  ranking: {ranking}", text, count=1)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def facts_kept(store: Store, run_id: int, facts: list[str]) -> int:
    turns = store.calls(run_id, "turn")
    if not turns:
        return 0
    prompt = " ".join(m["content"] for m in turns[-1].prompt).lower()
    kept = 0
    for fact in facts:
        terms = query_terms(fact)
        if terms and sum(t in prompt for t in terms) * 2 >= len(terms):
            kept += 1
    return kept


@dataclass
class Tally:
    """One ranking's numbers, summed over its runs."""

    runs: int = 0
    kept: int = 0
    good: int = 0
    replies: int = 0
    evaluated: int = 0
    turns: int = 0
    rating: int = 0
    collapses: int = 0

    def add(self, store: Store, run_id: int, facts: list[str]) -> None:
        """Read one finished run back from its database."""
        self.runs += 1
        self.kept += facts_kept(store, run_id, facts)
        summary = summarize(score_run(store, run_id))
        self.good += round(summary.good_ratio * summary.replies)
        self.replies += summary.replies
        calls = store.calls(run_id)
        self.evaluated += sum(c.evaluated_tokens for c in calls if c.purpose in ("turn", "retry"))
        self.turns += len(store.calls(run_id, "turn"))
        self.rating += sum(c.prompt_tokens + c.completion_tokens for c in calls if c.purpose == "importance")
        self.collapses += len({c.turn for c in calls if c.purpose == "collapse"})

    def row(self, name: str, facts: int) -> str:
        low, high = wilson(self.kept, self.runs * facts)
        return (f"{name:<12}{self.runs:>5}{f'{self.kept}/{self.runs * facts}':>12}"
                f"{f'{low:.0%}-{high:.0%}':>14}{self.good / max(1, self.replies):>7.0%}"
                f"{self.evaluated / max(1, self.turns):>10.0f}{self.rating:>11}{self.collapses:>10}")


HEADER = (f"{'ranking':<12}{'runs':>5}{'facts kept':>12}{'95% CI':>14}{'good':>7}"
          f"{'eval/turn':>10}{'rating tok':>11}{'collapses':>10}")


def ranking_of(scenario_yaml: str) -> str:
    """The ranking a stored run used, read from the scenario text it ran (bm25 unless it says)."""
    ranking = (yaml.safe_load(scenario_yaml).get("memory") or {}).get("ranking") or {}
    return str(ranking.get("type", "bm25"))


def report(databases: list[Path]) -> None:
    """The table for the completed runs already stored (e.g. side-by-side processes, or a
    benchmark stopped part-way): each run's facts are its own scenario's scripted inputs."""
    tallies: dict[str, Tally] = {}
    facts_per_run = 0
    for db in databases:
        with Store.open(db) as store:
            for run in store.runs():
                if run.status != "completed":
                    continue
                loaded = load_scenario_text(run.scenario_yaml, base_dir=Path(run.scenario_path or ".").parent)
                facts = [i.text for i in loaded.scenario.inputs if not i.pin]
                facts_per_run = len(facts)
                tallies.setdefault(ranking_of(run.scenario_yaml), Tally()).add(store, run.id, facts)
    print(HEADER)
    for name, tally in sorted(tallies.items()):
        print(tally.row(name, facts_per_run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", type=Path,
                        default=builtin_dir() / "scenarios" / "generative-memory.yaml")
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--max-turns", type=int, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--rankings", nargs="+", choices=list(RANKINGS), default=list(RANKINGS),
                        help="run only these (e.g. one per process, side by side)")
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="DB",
                        help="print the table for the completed runs stored in these databases; run nothing")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    base = load_scenario(args.scenario)
    facts = [i.text for i in base.scenario.inputs if not i.pin]
    db = args.db or Path(tempfile.mkdtemp()) / "ranking.db"
    backend = open_backend(args.backend, args.model, num_ctx=base.scenario.memory.num_ctx)
    print(HEADER)
    try:
        with Store.open(db) as store:
            for name in args.rankings:
                tally = Tally()
                for seed in args.seeds:
                    text = with_ranking(base.source_yaml, RANKINGS[name])
                    loaded = load_scenario_text(text, base_dir=args.scenario.parent)
                    settings = settings_for(loaded, backend, seed=seed, max_turns=args.max_turns)
                    run_id = start_run(store, loaded, backend, settings)
                    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
                        pass
                    tally.add(store, run_id, facts)
                print(tally.row(name, len(facts)), flush=True)
    finally:
        backend.close()
    print(f"database: {db}")


if __name__ == "__main__":
    main()
