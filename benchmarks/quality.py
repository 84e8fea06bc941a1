"""What the personas say, per prompt layout: the quality benchmark.

Run from the repository root, in the project venv (personae[embedded,test] installed):

    python benchmarks/quality.py                       # every built-in scenario, every layout, 3 seeds
    python benchmarks/quality.py --layouts transcript classic --seeds 1
    python benchmarks/quality.py my-scenario.yaml --backend ollama --model llama3.2:3b
    python benchmarks/quality.py --show                # print every reply with its verdict
    python benchmarks/quality.py --layouts named --seeds 1 --before OLD_PERSONAS/
                                                       # a change side by side with how it was

Each run is a real deliberation on the chosen backend (default: the embedded SmolLM2-135M), stored
in a SQLite file (a temporary one unless ``--db``), and scored from that database alone by
``personae.quality`` — the same code as ``personae score RUN``. Per layout it prints the share of
good replies (not empty, not a copy, on topic, in the persona's own voice), each failure count,
replies cut at ``num_predict``, the contract rate (a closing line that starts with the stop phrase
where the persona's instructions ask for it; numbered steps where they ask for them), how many
runs that reached their closing persona ended with that line, evaluated prompt tokens per persona
turn (retries included: the reply guard's attempts are model calls too), retries, and wall time.
Wall times on a shared 2-core machine are noisy; token counts are exact.

``--before DIR`` runs every scenario twice, interleaved: as it is ("after") and as it was
("before"): the persona files in DIR (e.g. ``git show main:personae/builtin/personas/critic.yaml``)
stand in for the personas of the same name, and the reply rules added since (trimming cut
replies, placeholder checks: ``RunSettings``) are off.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from personae.config import builtin_dir, load_scenario
from personae.config.loader import load_persona_file
from personae.llm.base import Backend
from personae.llm.backends import open_backend
from personae.orchestrator.prompts import LAYOUTS
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.quality import FAILURES, ReplyScore, summarize
from personae.quality.runs import score_run
from personae.store.repo import Store


@dataclass
class Tally:
    runs: int = 0
    scores: list[ReplyScore] = field(default_factory=list)
    turns: int = 0
    evaluated: int = 0
    retries: int = 0
    seconds: float = 0.0
    closers: int = 0  # runs in which a persona with a closing contract spoke
    closed: int = 0  # … and its last reply kept it

    def add(self, other: Tally) -> None:
        for name in ("runs", "turns", "evaluated", "retries", "seconds", "closers", "closed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.scores += other.scores


def run_one(
    store: Store, path: Path, backend: Backend, layout: str, seed: int, before: Path | None = None
) -> tuple[int, Tally]:
    loaded = load_scenario(path)
    rules: dict[str, bool] = {}
    if before is not None:
        old = {p.stem: p for p in before.glob("*.yaml")}
        personas = {
            name: load_persona_file(old[name.lower()]) if name.lower() in old else persona
            for name, persona in loaded.personas.items()
        }
        loaded = replace(loaded, personas=personas)
        rules = {"check_placeholders": False, "trim_cut_replies": False, "check_self_copies": False}
    settings = settings_for(loaded, backend, layout=layout, seed=seed, **rules)
    run_id = start_run(store, loaded, backend, settings)
    started = time.perf_counter()
    for _ in Orchestrator(loaded, backend, store, settings).run(run_id):
        pass
    seconds = time.perf_counter() - started  # the loop's own time, not the row's clock
    tally = tally_of_run(store, run_id)
    tally.seconds = seconds
    return run_id, tally


def tally_of_run(store: Store, run_id: int) -> Tally:
    """A stored run's numbers (``--report``): the same as ``run_one`` measures, wall time from
    the run's own start and finish."""
    run = store.run(run_id)
    scores = score_run(store, run_id)
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    tally = Tally(
        runs=1, scores=scores, turns=len(scores), evaluated=run.evaluated_tokens,
        retries=len(store.calls(run_id, "retry")), seconds=seconds,
    )
    closing = [s for s in scores if s.contract_kind == "closing"]
    if closing:
        tally.closers, tally.closed = 1, int(bool(closing[-1].contract))
    return tally


def report(paths: list[Path]) -> None:
    """The tables for runs already stored, from one or more benchmark databases."""
    by_layout: dict[str, Tally] = defaultdict(Tally)
    by_scenario: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for path in paths:
        with Store.open_readonly(path) as store:
            for run in store.runs():
                if run.status != "completed":
                    continue
                tally = tally_of_run(store, run.id)
                by_layout[run.layout].add(tally)
                by_scenario[(run.scenario_name, run.layout)].add(tally)
    print(table(dict(by_layout)))
    for name in sorted({n for n, _ in by_scenario}):
        print(f"\n{name}")
        print(table({lay: t for (n, lay), t in by_scenario.items() if n == name}))


def table(rows: dict[str, Tally]) -> str:
    head = (
        f"{'layout':<16}{'runs':>5}{'replies':>8}{'good':>7}"
        + "".join(f"{name.replace('_', ' '):>12}" for name in (*FAILURES, "cut"))
        + f"{'contract':>10}{'closed':>8}{'eval/turn':>10}{'retries':>8}{'wall s':>8}"
    )
    lines = [head, "-" * len(head)]
    for layout, t in rows.items():
        s = summarize(t.scores)
        rate = s.contract_rate
        lines.append(
            f"{layout:<16}{t.runs:>5}{s.replies:>8}{s.good_ratio:>7.0%}"
            + "".join(f"{s.counts[name]:>12}" for name in (*FAILURES, "cut"))
            + f"{(f'{rate:.0%}' if rate is not None else '-'):>10}"
            + f"{f'{t.closed}/{t.closers}':>8}"
            + f"{t.evaluated / max(1, t.turns):>10.0f}{t.retries:>8}{t.seconds:>8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", type=Path, help="scenario files (default: the built-in ones)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--backend", default="embedded", choices=["embedded", "ollama", "openai", "auto"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--base-url", default=None, help="for --backend openai")
    parser.add_argument("--db", type=Path, default=None, help="keep the runs in this SQLite file")
    parser.add_argument("--show", action="store_true", help="print every reply with its verdict")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--before", type=Path, default=None, metavar="DIR",
                        help="also run each scenario as it was: DIR's persona files, no new reply rules")
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="DB",
                        help="print the tables for the runs stored in these databases; run nothing")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return

    paths = args.scenarios or sorted((builtin_dir() / "scenarios").glob("*.yaml"))
    db = args.db or Path(tempfile.mkdtemp(prefix="personae-quality-")) / "quality.db"
    backends: dict[int | None, Backend] = {}
    by_layout: dict[str, Tally] = defaultdict(Tally)
    by_scenario: dict[tuple[str, str], Tally] = defaultdict(Tally)
    print(f"backend {args.backend} · database {db}", flush=True)
    with Store.open(db) as store:
        for seed in range(1, args.seeds + 1):
            for path in paths:
                loaded = load_scenario(path)
                num_ctx = loaded.scenario.memory.num_ctx
                if num_ctx not in backends:
                    backends[num_ctx] = open_backend(
                        args.backend, args.model or loaded.scenario.model if args.backend != "embedded" else args.model,
                        num_ctx=num_ctx, base_url=args.base_url,
                    )
                arms = [(layout, None) for layout in args.layouts]
                if args.before is not None:
                    arms = [(f"{lay} {arm}", old) for lay in args.layouts for arm, old in (("before", args.before), ("after", None))]
                for label, old in arms:
                    layout = label.split()[0]
                    run_id, tally = run_one(store, path, backends[num_ctx], layout, seed, old)
                    by_layout[label].add(tally)
                    by_scenario[(loaded.scenario.name, label)].add(tally)
                    s = summarize(tally.scores)
                    print(
                        f"run {run_id}: {loaded.scenario.name} · {label} · seed {seed}: "
                        f"{s.good}/{s.replies} good, {tally.retries} retries, "
                        f"{tally.evaluated} evaluated, {tally.seconds:.0f} s",
                        flush=True,
                    )
                    if args.show:
                        for r in tally.scores:
                            verdict = "good" if r.good else ",".join(r.failures)
                            print(f"  [{r.reply.turn}] {r.reply.persona} · {verdict} · copied {r.copied:.0%}")
                            print("      " + r.reply.content.replace("\n", "\n      "))
    for backend in backends.values():
        backend.close()
    print()
    print(table(dict(by_layout)))
    print()
    print("by scenario:")
    for name in sorted({n for n, _ in by_scenario}):
        print(f"\n{name}")
        print(table({label: t for (n, label), t in by_scenario.items() if n == name}))
    if args.json:
        payload = {
            layout: {
                "runs": t.runs, "replies": len(t.scores), "good": summarize(t.scores).good,
                "counts": summarize(t.scores).counts, "contract_rate": summarize(t.scores).contract_rate,
                "closed": [t.closed, t.closers], "evaluated_per_turn": t.evaluated / max(1, t.turns),
                "evaluated": t.evaluated, "retries": t.retries, "seconds": t.seconds,
            }
            for layout, t in by_layout.items()
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    sys.exit(main())
