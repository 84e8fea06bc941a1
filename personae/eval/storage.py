"""The eval tables (``evals``, ``eval_methods``, ``eval_items``, ``eval_results``): writes, one
short transaction each (a killed eval keeps every result it finished), and the reads a report
needs. The runs themselves are written by the orchestrator, as any run is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from personae import __version__
from personae.errors import UserError
from personae.eval.methods import Method
from personae.eval.runner import Outcome
from personae.eval.tasks import Task
from personae.store.models import Eval, EvalItem, EvalMethod, EvalResult
from personae.store.reads import Reader
from personae.store.repo import Store


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class EvalIds:
    eval_id: int
    methods: tuple[int, ...]  # in the order of the methods given
    items: tuple[int, ...]  # in the order of the tasks


def create_eval(store: Store, *, tasks_source: str, backend: str, model: str, seed: int,
                budget: str | None, methods: Sequence[Method], tasks: Sequence[Task]) -> EvalIds:
    with Session(store.engines.write) as session, session.begin():
        row = Eval(tasks=tasks_source, backend=backend, model=model, seed=seed, budget=budget,
                   status="running", started_at=utcnow(), personae_version=__version__)
        session.add(row)
        session.flush()
        method_rows = [
            EvalMethod(eval_id=row.id, position=i, spec=m.spec, kind=m.kind,
                       scenario=str(m.scenario) if m.scenario else None,
                       samples=m.samples)
            for i, m in enumerate(methods)
        ]
        item_rows = [
            EvalItem(eval_id=row.id, position=i, task_id=t.id, question=t.question, answer=t.answer,
                     check="scorer" if t.score is not None else t.check,
                     choices=list(t.choices) or None)
            for i, t in enumerate(tasks)
        ]
        session.add_all([*method_rows, *item_rows])
        session.flush()
        return EvalIds(row.id, tuple(m.id for m in method_rows), tuple(i.id for i in item_rows))


def record_result(store: Store, eval_id: int, method_id: int, item_id: int, outcome: Outcome) -> None:
    with Session(store.engines.write) as session, session.begin():
        session.add(EvalResult(
            eval_id=eval_id, method_id=method_id, item_id=item_id, answer=outcome.answer,
            correct=int(outcome.correct), reply=outcome.reply,
            votes=list(outcome.votes) or None, first_answer=outcome.first_answer,
            first_correct=None if outcome.first_correct is None else int(outcome.first_correct),
            evaluated_prompt_tokens=outcome.evaluated_prompt_tokens,
            completion_tokens=outcome.completion_tokens, wall_ns=outcome.wall_ns,
            run_ids=list(outcome.run_ids), created_at=utcnow(),
        ))


def set_samples(store: Store, method_id: int, samples: int) -> None:
    with store.engines.write.begin() as connection:
        connection.execute(update(EvalMethod).where(EvalMethod.id == method_id).values(samples=samples))


def set_budget(store: Store, eval_id: int, tokens: int) -> None:
    with store.engines.write.begin() as connection:
        connection.execute(update(Eval).where(Eval.id == eval_id).values(budget_tokens=tokens))


def finish_eval(store: Store, eval_id: int, status: str, error: str | None = None) -> None:
    with store.engines.write.begin() as connection:
        connection.execute(update(Eval).where(Eval.id == eval_id)
                           .values(status=status, error=error, finished_at=utcnow()))


@dataclass(frozen=True)
class StoredEval:
    """An eval as stored: enough to print its report again with no task file and no model."""

    row: Eval
    methods: tuple[EvalMethod, ...]
    items: tuple[EvalItem, ...]
    results: tuple[EvalResult, ...]


def load_eval(reader: Reader, eval_id: int) -> StoredEval:
    with Session(reader.engines.read) as session:
        row = session.get(Eval, eval_id)
        if row is None:
            last = session.scalar(select(func.max(Eval.id)))
            hint = f"eval ids go from 1 to {last}" if last else "this database has no evals yet"
            raise UserError(f"No eval {eval_id} in {reader.path} ({hint}). List them with: personae evals")
        methods = session.scalars(select(EvalMethod).where(EvalMethod.eval_id == eval_id)
                                  .order_by(EvalMethod.position)).all()
        items = session.scalars(select(EvalItem).where(EvalItem.eval_id == eval_id)
                                .order_by(EvalItem.position)).all()
        results = session.scalars(select(EvalResult).where(EvalResult.eval_id == eval_id)
                                  .order_by(EvalResult.id)).all()
        session.expunge_all()
        return StoredEval(row, tuple(methods), tuple(items), tuple(results))


def list_evals(reader: Reader, limit: int | None = None) -> list[dict[str, object]]:
    """One dict per eval, newest first: id, tasks, model, methods, items, status, started."""
    with Session(reader.engines.read) as session:
        query = select(Eval).order_by(Eval.id.desc())
        if limit:
            query = query.limit(limit)
        rows = session.scalars(query).all()
        listing = []
        for row in rows:
            specs = session.scalars(select(EvalMethod.spec).where(EvalMethod.eval_id == row.id)
                                    .order_by(EvalMethod.position)).all()
            items = session.scalar(select(func.count()).select_from(EvalItem)
                                   .where(EvalItem.eval_id == row.id))
            listing.append({
                "id": row.id, "tasks": row.tasks, "model": row.model, "methods": " ".join(specs),
                "items": items, "budget": row.budget or "", "status": row.status,
                "started": row.started_at,
            })
        return listing
