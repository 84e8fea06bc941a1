"""Running a sweep's variants at once: worker threads, at most an endpoint's concurrency each,
every variant through the ordinary run loop (``Orchestrator.run``) on the worker's own store
connection to the same database.

The runner never prints. ``run_variants`` is a generator of ``BatchEvent`` values that the
workers put on one queue; the CLI draws its progress bar from them, tests read them. Stopping
(Ctrl-C in the CLI, or closing the generator) sets an event that every worker checks between
turns: the run in flight is marked ``interrupted`` after its current turn, so ``batch resume``
continues it from there. A killed process leaves its runs ``running`` with a dead pid, which
``orchestrator/resume.py::check_resumable`` recognises the same way as ``personae resume`` does.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from personae.batch.rows import StoredVariant
from personae.batch.sweep import Endpoint
from personae.batch.load import load_variant
from personae.errors import PersonaeError
from personae.llm.base import Backend
from personae.orchestrator.resume import check_resumable, reload_scenario, run_settings
from personae.orchestrator.run import Orchestrator, settings_for, start_run
from personae.orchestrator.state import Stopped, TurnDone
from personae.store.repo import Store

# An endpoint, a model (None: the backend's default) and the window → an open backend.
OpenBackend = Callable[[Endpoint, str | None, int | None], Backend]


@dataclass(frozen=True)
class RunStarted:
    key: str
    run_id: int
    resumed_after: int | None  # the turn a resumed run continues after; None for a new run


@dataclass(frozen=True)
class TurnFinished:
    key: str
    run_id: int
    turn: int
    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class RunFinished:
    key: str
    run_id: int | None  # None: the variant failed before its run could start
    status: str  # completed | failed | interrupted
    reason: str | None
    turns: int


BatchEvent = RunStarted | TurnFinished | RunFinished


def worker_backend(backend: Backend, worker_index: int) -> Backend:
    """The backend a worker calls: its own slot of the embedded engine (opened with one slot per
    worker, see ``cli/batch_commands.py::_opener``), so each run keeps its cached prefix while
    the others use theirs; any server without slots comes back unchanged."""
    from personae.llm.backends import pinned, slot_count

    return pinned(backend, worker_index % slot_count(backend))


def workers_for(endpoint: Endpoint) -> int:
    """How many runs an endpoint takes at once: its concurrency. The embedded engine is opened
    with that many slots; servers schedule concurrent requests themselves."""
    return endpoint.concurrency


@dataclass
class _Shared:
    """What the workers share: the pending variants, the open backends, the stop signal."""

    pending: list[StoredVariant]
    open_backend: OpenBackend
    events: queue.Queue[BatchEvent | None] = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    backends: dict[tuple[int, str | None, int | None], Backend] = field(default_factory=dict)

    def take(self, endpoint: Endpoint) -> StoredVariant | None:
        with self.lock:
            for index, item in enumerate(self.pending):
                if endpoint.serves(item.variant.model):
                    return self.pending.pop(index)
        return None

    def backend(self, slot: int, endpoint: Endpoint, model: str | None, num_ctx: int | None) -> Backend:
        """One backend per endpoint, model and window, opened by the first worker that needs it
        (opening loads a model: under the lock, so it happens once)."""
        with self.lock:
            key = (slot, model, num_ctx)
            if key not in self.backends:
                self.backends[key] = self.open_backend(endpoint, model, num_ctx)
            return self.backends[key]


def run_variants(
    db: str | None,
    work: list[StoredVariant],
    endpoints: list[Endpoint],
    open_backend: OpenBackend,
) -> Iterator[BatchEvent]:
    """Run (or resume) every variant of ``work``; yields events as the workers make them."""
    shared = _Shared(pending=list(work), open_backend=open_backend)
    threads = [
        threading.Thread(
            target=_worker, args=(db, shared, slot, endpoint, index),
            name=f"batch-{slot}-{index}", daemon=True,
        )
        for slot, endpoint in enumerate(endpoints)
        for index in range(workers_for(endpoint))
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            event = shared.events.get()
            if event is None:
                running -= 1
                continue
            yield event
    finally:
        shared.stop.set()  # closed early or interrupted: every worker stops after its turn
        for thread in threads:
            thread.join()
        for backend in shared.backends.values():
            backend.close()


def _worker(db: str | None, shared: _Shared, slot: int, endpoint: Endpoint, index: int) -> None:
    store: Store | None = None
    try:
        store = Store.open(db)  # in this thread: SQLite connections stay with their thread
        while not shared.stop.is_set():
            item = shared.take(endpoint)
            if item is None:
                return
            shared.events.put(_run_one(store, shared, slot, endpoint, index, item))
    finally:
        if store is not None:
            store.close()
        shared.events.put(None)


def _run_one(
    store: Store, shared: _Shared, slot: int, endpoint: Endpoint, index: int, item: StoredVariant
) -> RunFinished:
    variant = item.variant
    run_id: int | None = item.run_id
    turns = 0
    try:
        if run_id is None:
            loaded = load_variant(variant)
            model = variant.model or endpoint.model or loaded.scenario.model
            backend = shared.backend(slot, endpoint, model, loaded.scenario.memory.num_ctx)
            settings = settings_for(
                loaded, backend, layout=variant.layout, max_turns=variant.max_turns, seed=variant.seed
            )
            orchestrator = Orchestrator(loaded, worker_backend(backend, index), store, settings)
            run_id = start_run(store, loaded, backend, settings, batch_variant_id=item.id)
            shared.events.put(RunStarted(variant.key, run_id, None))
        else:
            row = store.run(run_id)
            check_resumable(row)
            loaded = reload_scenario(store, row)
            backend = shared.backend(slot, endpoint, variant.model or endpoint.model or row.model, row.num_ctx)
            settings = run_settings(row, loaded, backend)
            orchestrator = Orchestrator(loaded, worker_backend(backend, index), store, settings)
            if not store.claim_run(run_id, expected_status=row.status, expected_pid=row.pid):
                return RunFinished(variant.key, run_id, "failed", "claimed by another process", row.turns)
            shared.events.put(RunStarted(variant.key, run_id, row.turns))
        return _drive(store, shared, orchestrator, variant.key, run_id)
    except PersonaeError as exc:  # the run (if any) is already marked failed by the run loop
        return RunFinished(variant.key, run_id, "failed", str(exc), turns)
    except Exception as exc:  # noqa: BLE001 - a bug fails this variant, not the whole sweep
        detail = "".join(traceback.format_exception_only(exc)).strip()
        if run_id is not None:
            store.finish_run(run_id, "failed", stop_reason="error", error=detail)
        return RunFinished(variant.key, run_id, "failed", detail, turns)


def _drive(
    store: Store, shared: _Shared, orchestrator: Orchestrator, key: str, run_id: int
) -> RunFinished:
    # A generator: closed at once when the batch stops, so the run loop's own cleanup runs.
    events = orchestrator.run(run_id)  # typed as the Generator it is
    for event in events:
        if isinstance(event, TurnDone):
            usage = event.usage
            turn = event.utterance.turn
            shared.events.put(TurnFinished(
                key, run_id, turn, usage.prompt_tokens, usage.evaluated_tokens,
                usage.completion_tokens,
            ))
            if shared.stop.is_set():
                events.close()
                store.finish_run(run_id, "interrupted", stop_reason="interrupted")
                return RunFinished(key, run_id, "interrupted", "interrupted", turn)
        elif isinstance(event, Stopped):
            return RunFinished(key, run_id, event.status, event.reason, event.turns)
    return RunFinished(key, run_id, "completed", None, store.totals(run_id).turns)

