"""An eval's report as plain rows: per method accuracy with its 95% Wilson interval, evaluated
tokens per item and wall time; for each crew, the paired comparison with every other method
(exact McNemar) and its flips. The CLI draws these as a table or writes them as JSON/CSV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personae.eval.runner import vote_key
from personae.eval.stats import Flips, Paired, accuracy, flips, mcnemar
from personae.eval.storage import StoredEval
from personae.eval.tasks import Task
from personae.store.models import EvalItem, EvalMethod, EvalResult

COLUMNS = ("method", "items", "correct", "accuracy", "ci_low", "ci_high",
           "evaluated_tokens_per_item", "budget_tokens", "samples", "wall_seconds",
           "wall_seconds_per_item", "flips", "vs")


@dataclass(frozen=True)
class Comparison:
    crew: str
    baseline: str
    paired: Paired
    items: int


def _task(item: EvalItem) -> Task:
    check = item.check if item.check != "scorer" else "exact"
    return Task(item.task_id, item.question, item.answer, check, tuple(item.choices or ()))


def _by_method(stored: StoredEval) -> dict[int, dict[int, EvalResult]]:
    table: dict[int, dict[int, EvalResult]] = {m.id: {} for m in stored.methods}
    for result in stored.results:
        table.setdefault(result.method_id, {})[result.item_id] = result
    return table


def comparisons(stored: StoredEval) -> list[Comparison]:
    """Every crew/vote method against every other method, on the items both answered."""
    table = _by_method(stored)
    found = []
    for crew in stored.methods:
        if crew.kind not in ("crew", "vote"):
            continue
        for other in stored.methods:
            if other.id == crew.id:
                continue
            shared = [i.id for i in stored.items if i.id in table[crew.id] and i.id in table[other.id]]
            paired = mcnemar([bool(table[crew.id][i].correct) for i in shared],
                             [bool(table[other.id][i].correct) for i in shared])
            found.append(Comparison(crew.spec, other.spec, paired, len(shared)))
    return found


def crew_flips(stored: StoredEval, method: EvalMethod) -> Flips:
    results = _by_method(stored)[method.id]
    first, final, same = [], [], []
    for item in stored.items:
        result = results.get(item.id)
        if result is None or result.first_answer is None:
            continue
        task = _task(item)
        first.append((result.first_answer, bool(result.first_correct)))
        final.append((result.answer, bool(result.correct)))
        same.append(vote_key(task, result.first_answer) == vote_key(task, result.answer))
    return flips(first, final, same)


def method_rows(stored: StoredEval) -> list[dict[str, Any]]:
    """One dict per method, in the order given (the JSON of ``--format json``)."""
    table = _by_method(stored)
    vs: dict[str, dict[str, Any]] = {}
    for c in comparisons(stored):
        vs.setdefault(c.crew, {})[c.baseline] = {
            "items": c.items, "crew_only_correct": c.paired.a_only,
            "baseline_only_correct": c.paired.b_only, "p_value": round(c.paired.p_value, 4),
        }
    rows = []
    for method in stored.methods:
        results = list(table[method.id].values())
        acc = accuracy([bool(r.correct) for r in results])
        tokens = [r.evaluated_prompt_tokens + r.completion_tokens for r in results]
        wall = sum(r.wall_ns for r in results) / 1e9
        row: dict[str, Any] = {
            "method": method.spec,
            "items": acc.items,
            "correct": acc.correct,
            "accuracy": round(acc.rate, 4),
            "ci_low": round(acc.low, 4),
            "ci_high": round(acc.high, 4),
            "evaluated_tokens_per_item": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
            "budget_tokens": stored.row.budget_tokens,
            "samples": method.samples if method.kind == "sc" else None,
            "wall_seconds": round(wall, 2),
            "wall_seconds_per_item": round(wall / len(results), 2) if results else 0.0,
            "flips": None,
            "vs": vs.get(method.spec),
        }
        if method.kind in ("crew", "vote"):
            f = crew_flips(stored, method)
            row["flips"] = {"items": f.items, "changed": f.changed, "wrong_to_right": f.wrong_to_right,
                            "right_to_wrong": f.right_to_wrong, "wrong_to_wrong": f.wrong_to_wrong}
        rows.append(row)
    return rows
