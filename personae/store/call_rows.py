"""Model calls as ``llm_calls`` rows, and the run totals they add up to.

Every write that stores calls (a turn, a collapse, a call that failed alone) adds their token
counts to the run's row in the same transaction, so ``runs`` never disagrees with ``llm_calls``.
``prompt_hash`` (``llm/fingerprint.py``) is how ``replay`` recognises a prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update

from personae.llm.fingerprint import stored_prompt_hash
from personae.store.models import RUNS
from personae.store.records import CallRecord, RunTotals
from personae.store.rows import Statements, fetch_one


def call_row(
    run_id: int, call: CallRecord, message_id: int | None, now: datetime
) -> dict[str, Any]:
    """An ``llm_calls`` row as Core parameters (column names, so ``json_schema``)."""
    prompt = [m.to_dict() for m in call.prompt]  # stored, and hashed: made once
    usage = call.usage
    return {
        "run_id": run_id,
        "message_id": message_id,
        "turn": call.turn,
        "purpose": call.purpose,
        "persona": call.persona,
        "backend": call.backend,
        "model": call.model,
        "options": call.options,
        "prompt": prompt,
        "prompt_hash": stored_prompt_hash(prompt, call.schema),
        "json_schema": call.schema,
        "manifest": call.manifest,
        "response": call.response,
        "done_reason": call.done_reason,
        "prompt_tokens": usage.prompt_tokens,
        "evaluated_tokens": usage.evaluated_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_ns": usage.total_ns,
        "load_ns": usage.load_ns,
        "prompt_eval_ns": usage.prompt_eval_ns,
        "eval_ns": usage.eval_ns,
        "wall_ns": call.wall_ns,
        "error": call.error,
        "created_at": now,
    }


TOTALS = (RUNS.c.turns, RUNS.c.prompt_tokens, RUNS.c.evaluated_tokens, RUNS.c.completion_tokens)

# Built once, so it compiles once (see ``rows.py``).
_ADD_TOTALS = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run"))
    .values(
        turns=RUNS.c.turns + bindparam("add_turns"),
        prompt_tokens=RUNS.c.prompt_tokens + bindparam("add_prompt"),
        evaluated_tokens=RUNS.c.evaluated_tokens + bindparam("add_evaluated"),
        completion_tokens=RUNS.c.completion_tokens + bindparam("add_completion"),
        heartbeat_at=bindparam("now", type_=RUNS.c.heartbeat_at.type),
    )
    .returning(*TOTALS)
)


def add_totals(
    connection: Connection,
    statements: Statements,
    run_id: int,
    calls: Sequence[CallRecord],
    now: datetime,
    *,
    turns: int = 0,
) -> RunTotals:
    """Add ``calls``' token counts (and ``turns``) to the run's row, refresh its heartbeat and
    return the totals as they now stand in this transaction."""
    row = fetch_one(connection, statements, _ADD_TOTALS, {
        "run": run_id,
        "add_turns": turns,
        "add_prompt": sum(c.usage.prompt_tokens for c in calls),
        "add_evaluated": sum(c.usage.evaluated_tokens for c in calls),
        "add_completion": sum(c.usage.completion_tokens for c in calls),
        "now": now,
    })
    return RunTotals(*row)
