"""The sweeps and evals pages: a batch's variants side by side, an eval's methods side by side.

Every number comes from the rooms' own readers and report functions (``batch/report.py``,
``batch/rows.py``, ``eval/report.py``, ``eval/storage.py``), the same ones ``personae batch
report`` and ``personae eval report`` print, so the page and the command never disagree. This
module only adds what a page needs beside them: the rows' dates as text and, per eval item, which
runs each method's answer came from. Like ``pages.py`` it only reads.
"""

from __future__ import annotations

from typing import Any

from personae.batch.report import batch_report
from personae.batch.rows import batch, batches
from personae.eval.report import method_rows
from personae.eval.storage import list_evals, load_eval
from personae.store.repo import Store
from personae.web.pages import plain


def batches_page(store: Store) -> dict[str, Any]:
    """``/batches``: every batch, newest first, with its variants' runs counted by status."""
    return {
        "batches": [
            {"id": row.id, "name": row.name, "status": row.status, "variants": row.variants,
             "runs": dict(sorted(counts.items())), "started_at": plain(row.started_at),
             "finished_at": plain(row.finished_at)}
            for row, counts in batches(store)
        ]
    }


def batch_page(store: Store, batch_id: int) -> dict[str, Any]:
    """``/batches/{id}``: ``batch_report``'s runs and seed groups as they are, and the batch row."""
    row = batch(store, batch_id)
    report = batch_report(store, batch_id).as_json()
    return {
        **report,
        "sweep_path": row.sweep_path,
        "variants": row.variants,
        "started_at": plain(row.started_at),
        "finished_at": plain(row.finished_at),
    }


def evals_page(store: Store) -> dict[str, Any]:
    """``/evals``: ``list_evals``'s rows, newest first."""
    return {"evals": [{k: plain(v) for k, v in row.items()} for row in list_evals(store)]}


def eval_page(store: Store, eval_id: int) -> dict[str, Any]:
    """``/evals/{id}``: ``method_rows`` (accuracy and interval, tokens per item, paired
    comparisons, flips) and, per item, each method's answer with the runs it came from."""
    stored = load_eval(store, eval_id)
    row = stored.row
    results = {(r.method_id, r.item_id): r for r in stored.results}
    items = []
    for item in stored.items:
        answers = []
        for method in stored.methods:
            result = results.get((method.id, item.id))
            answers.append(None if result is None else {
                "method": method.spec, "answer": result.answer, "correct": bool(result.correct),
                "first_answer": result.first_answer, "votes": result.votes,
                "run_ids": list(result.run_ids or []),
            })
        items.append({"task_id": item.task_id, "question": item.question,
                      "expected": item.answer, "check": item.check, "answers": answers})
    return {
        "eval": {
            "id": row.id, "tasks": row.tasks, "backend": row.backend, "model": row.model,
            "seed": row.seed, "budget": row.budget, "budget_tokens": row.budget_tokens,
            "status": row.status, "error": row.error, "started_at": plain(row.started_at),
            "finished_at": plain(row.finished_at), "personae_version": row.personae_version,
        },
        "methods": method_rows(stored),
        "method_names": [m.spec for m in stored.methods],
        "items": items,
    }
