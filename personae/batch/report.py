"""A batch's variants side by side: per run, and per group of runs that differ only in seed.

Everything comes from the database (the run rows, their calls, the quality scorer on their
stored replies), so a report can be printed at any time, during a batch or long after.
``wall_s`` is the time a run spent in model calls as Personae saw it (the sum of its calls'
``wall_ns``): unlike finished − started, it does not count the hours a killed batch waited
for ``batch resume``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from personae.batch.rows import StoredVariant, batch, variants
from personae.quality.runs import score_run
from personae.quality.scoring import summarize
from personae.store.models import CALLS, RUNS
from personae.store.repo import Store

RUN_COLUMNS = [
    "variant", "scenario", "layout", "seed", "model", "run", "status", "stop_reason", "turns",
    "good", "replies", "sent_tokens", "evaluated_tokens", "completion_tokens", "wall_s",
]
GROUP_COLUMNS = [
    "group", "runs", "completed", "turns_mean", "turns_sd", "good_mean", "good_sd",
    "evaluated_mean", "evaluated_sd", "sent_mean", "sent_sd", "wall_s_mean", "wall_s_sd",
    "stop_reasons",
]


@dataclass(frozen=True)
class RunLine:
    variant: str
    group: str  # the key without its seed: runs that differ only in seed share it
    scenario: str
    layout: str | None
    seed: int | None
    model: str | None
    run: int | None
    status: str  # a run's status, or pending
    stop_reason: str | None
    turns: int
    good: float | None  # share of replies the quality scorer finds good (on topic, new, own voice)
    replies: int
    sent_tokens: int
    evaluated_tokens: int
    completion_tokens: int
    wall_s: float


@dataclass(frozen=True)
class GroupLine:
    group: str
    runs: int
    completed: int
    turns_mean: float | None
    turns_sd: float | None
    good_mean: float | None
    good_sd: float | None
    evaluated_mean: float | None
    evaluated_sd: float | None
    sent_mean: float | None
    sent_sd: float | None
    wall_s_mean: float | None
    wall_s_sd: float | None
    stop_reasons: str  # "max_turns ×3, error ×1"


@dataclass(frozen=True)
class BatchReport:
    batch_id: int
    name: str
    status: str
    runs: list[RunLine]
    groups: list[GroupLine]

    def as_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id, "name": self.name, "status": self.status,
            "runs": [asdict(r) for r in self.runs], "groups": [asdict(g) for g in self.groups],
        }


def batch_report(store: Store, batch_id: int) -> BatchReport:
    row = batch(store, batch_id)
    lines = [_run_line(store, item) for item in variants(store, batch_id)]
    groups: dict[str, list[RunLine]] = {}
    for line in lines:
        groups.setdefault(line.group, []).append(line)
    return BatchReport(
        batch_id, row.name, row.status, lines, [_group_line(k, v) for k, v in groups.items()]
    )


def _run_line(store: Store, item: StoredVariant) -> RunLine:
    v = item.variant
    group = "|".join(part for part in v.key.split("|") if not part.startswith("seed="))
    base: dict[str, Any] = {"variant": v.key, "group": group, "scenario": v.scenario, "layout": v.layout,
            "seed": v.seed, "model": v.model, "run": item.run_id}
    if item.run_id is None:
        return RunLine(**base, status="pending", stop_reason=None, turns=0, good=None, replies=0,
                       sent_tokens=0, evaluated_tokens=0, completion_tokens=0, wall_s=0.0)
    with store.engines.read.connect() as connection:
        run = connection.execute(
            select(RUNS.c.status, RUNS.c.stop_reason, RUNS.c.turns, RUNS.c.prompt_tokens,
                   RUNS.c.evaluated_tokens, RUNS.c.completion_tokens, RUNS.c.layout,
                   RUNS.c.seed, RUNS.c.model)
            .where(RUNS.c.id == item.run_id)
        ).one()
        wall_ns = connection.execute(
            select(func.coalesce(func.sum(CALLS.c.wall_ns), 0)).where(CALLS.c.run_id == item.run_id)
        ).scalar_one()
    summary = summarize(score_run(store, item.run_id))
    base |= {"layout": run.layout, "seed": run.seed, "model": run.model}
    return RunLine(
        **base, status=run.status, stop_reason=run.stop_reason, turns=run.turns,
        good=summary.good_ratio if summary.replies else None, replies=summary.replies,
        sent_tokens=run.prompt_tokens, evaluated_tokens=run.evaluated_tokens,
        completion_tokens=run.completion_tokens, wall_s=round(wall_ns / 1e9, 3),
    )


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation; the spread is None below two values."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _group_line(group: str, lines: list[RunLine]) -> GroupLine:
    """Means and spreads over the group's completed runs (a failed or pending run's numbers
    would pull the mean towards zero); the stop reasons of every run that stopped."""
    done = [line for line in lines if line.status == "completed"]
    turns = mean_sd([line.turns for line in done])
    good = mean_sd([line.good for line in done if line.good is not None])
    evaluated = mean_sd([line.evaluated_tokens for line in done])
    sent = mean_sd([line.sent_tokens for line in done])
    wall = mean_sd([line.wall_s for line in done])
    reasons = Counter(line.stop_reason or line.status for line in lines)
    return GroupLine(
        group, len(lines), len(done), *turns, *good, *evaluated, *sent, *wall,
        ", ".join(f"{reason} ×{n}" for reason, n in sorted(reasons.items())),
    )
