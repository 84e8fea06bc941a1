"""One eval from start to end: every method on every task, stored as it goes.

Deliberating methods run first, because under ``--budget matched`` their median cost is the
budget the others get; ``sc`` runs last, because its K comes from that budget. Each finished
method × item is committed at once, so an interrupted eval keeps everything it finished; it is
marked ``interrupted`` or ``failed`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from personae.errors import PersonaeError
from personae.eval import storage
from personae.eval.budget import budget_from, samples_for
from personae.eval.methods import Method
from personae.eval.runner import Outcome, Runner
from personae.eval.tasks import Task
from personae.store.repo import Store


@dataclass(frozen=True)
class Progress:
    """Told after each method × item: for a progress line."""

    method: str
    done: int
    total: int
    outcome: Outcome


OnProgress = Callable[[Progress], None]


def run_order(methods: Sequence[Method]) -> list[int]:
    """Indexes of ``methods`` in the order they run: crews and votes, then one-call methods,
    then self-consistency (stable within each group)."""
    rank = {"crew": 0, "vote": 0, "single": 1, "cot": 1, "sc": 2}
    return sorted(range(len(methods)), key=lambda i: rank[methods[i].kind])


def run_eval(store: Store, runner: Runner, *, tasks: Sequence[Task], methods: Sequence[Method],
             tasks_source: str, budget: str | None, on_progress: OnProgress | None = None) -> int:
    """Run and store the eval; returns its id (also when it ends early, with the reason stored)."""
    ids = storage.create_eval(store, tasks_source=tasks_source, backend=runner.backend.name,
                              model=runner.backend.model, seed=runner.seed, budget=budget,
                              methods=methods, tasks=tasks)
    total = len(methods) * len(tasks)
    done = 0
    budget_tokens = int(budget) if budget and budget.isdigit() else None
    if budget_tokens is not None:
        storage.set_budget(store, ids.eval_id, budget_tokens)

    def keep(index: int, item: int, outcome: Outcome) -> None:
        nonlocal done
        storage.record_result(store, ids.eval_id, ids.methods[index], ids.items[item], outcome)
        done += 1
        if on_progress is not None:
            on_progress(Progress(methods[index].spec, done, total, outcome))

    try:
        for index in run_order(methods):
            method = methods[index]
            if method.kind == "sc" and budget_tokens is not None:
                _matched_samples(store, runner, method, tasks, budget_tokens, ids.methods[index],
                                 partial(keep, index))
                continue
            costs = []
            for item, task in enumerate(tasks):
                outcome = runner.run(method, task)
                costs.append(outcome.tokens)
                keep(index, item, outcome)
            if budget == "matched" and method.deliberates and budget_tokens is None:
                budget_tokens = budget_from(costs)
                storage.set_budget(store, ids.eval_id, budget_tokens)
    except KeyboardInterrupt:
        storage.finish_eval(store, ids.eval_id, "interrupted", "interrupted")
        raise
    except PersonaeError as exc:
        storage.finish_eval(store, ids.eval_id, "failed", str(exc))
        raise
    storage.finish_eval(store, ids.eval_id, "completed")
    return ids.eval_id


def _matched_samples(store: Store, runner: Runner, method: Method, tasks: Sequence[Task],
                     budget_tokens: int, method_id: int,
                     keep: Callable[[int, Outcome], None]) -> None:
    """sc under a budget: every item's first sample, then K from their median cost, then the
    remaining K-1 samples of each item (the first ones are kept, not wasted on a pilot)."""
    first = [runner.sample_run(task, 0) for task in tasks]
    samples = samples_for(budget_tokens, [r.evaluated_prompt_tokens + r.completion_tokens for r in first])
    storage.set_samples(store, method_id, samples)
    for item, task in enumerate(tasks):
        runs = [first[item], *(runner.sample_run(task, i) for i in range(1, samples))]
        keep(item, runner.sample(task, runs))
