"""One path for every model call the loop makes (a turn, a retry, a selection, a collapse): timed
and recorded, whether the server answers or fails. What a call was for, and its prompt, come in a
``CallRecord``; the same record comes back filled with the reply, its usage and the wall time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from personae.errors import BackendError
from personae.llm.base import Backend, ChatRequest, ChatResult, TokenCallback
from personae.store.repo import CallRecord


def call_model(
    backend: Backend,
    request: ChatRequest,
    record: CallRecord,
    *,
    on_failure: Callable[[CallRecord], object],
    on_token: TokenCallback | None = None,
) -> tuple[CallRecord, ChatResult]:
    """Ask ``backend``; return the filled record and the result. A call the server fails is
    handed to ``on_failure`` with its error and wall time (a turn stores it at once; a collapse
    keeps it for its own transaction) before the error is raised: no call goes unrecorded."""
    started = time.perf_counter_ns()
    try:
        result = backend.chat(request, on_token=on_token)
    except BackendError as exc:
        on_failure(replace(record, error=str(exc), wall_ns=time.perf_counter_ns() - started))
        raise
    wall = time.perf_counter_ns() - started
    filled = replace(
        record, response=result.text, done_reason=result.done_reason, usage=result.usage,
        wall_ns=wall,
    )
    return filled, result
