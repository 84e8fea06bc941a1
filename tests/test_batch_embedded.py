"""A sweep on the real embedded engine: one loaded model, one parallel slot per worker, each
worker pinned to its own slot (``batch/runner.py::worker_backend``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae.batch.runner import RunFinished, worker_backend
from personae.batch.start import execute, plan_new
from personae.batch.sweep import Endpoint, load_sweep
from personae.llm.backends import open_backend, slot_count
from personae.llm.base import Backend
from personae.store.repo import Store
from tests.builders import make_scenario

pytestmark = pytest.mark.slow

SWEEP = """\
name: two-slots
scenarios: [a.yaml]
vary: {seed: [1, 2]}
max_turns: 2
options: {num_predict: 16}
endpoints: [{backend: embedded, concurrency: 2}]
"""


def test_two_workers_share_one_model_each_on_its_own_slot(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        make_scenario(name="slots", extra="memory: {num_ctx: 1024}\n"), encoding="utf-8"
    )
    (tmp_path / "sweep.yaml").write_text(SWEEP, encoding="utf-8")
    opened: list[Backend] = []

    def open_endpoint(endpoint: Endpoint, model: str | None, num_ctx: int | None) -> Backend:
        backend = open_backend("embedded", model, num_ctx=num_ctx, slots=endpoint.concurrency)
        opened.append(backend)
        return backend

    db = str(tmp_path / "b.db")
    store = Store.open(db)
    plan = plan_new(store, load_sweep(tmp_path / "sweep.yaml"))
    try:
        finished = [e for e in execute(store, db, plan, open_endpoint) if isinstance(e, RunFinished)]
        assert len(opened) == 1 and slot_count(opened[0]) == 2  # the model loaded once, two slots
        views = [worker_backend(opened[0], index) for index in (0, 1)]
        assert [v.slot for v in views] == [0, 1]  # type: ignore[attr-defined]
    finally:
        for backend in opened:
            backend.close()
    assert sorted(e.status for e in finished) == ["completed", "completed"]
    for event in finished:
        calls = store.calls(event.run_id or 0)
        assert len(calls) >= 2 and all(c.backend == "embedded" for c in calls)
        assert all(0 < c.evaluated_tokens <= c.prompt_tokens for c in calls)
