"""Starting a batch, and finding what is left of one to resume.

A batch is made of its stored sweep (endpoints and all) and its variants' rows, so ``batch
resume`` needs neither the sweep file nor the command line that started it. What is left: every
variant without a run (never started, or started before a kill could link one — impossible, the
link is in the run's own transaction) and every run not ``completed``. A finished run is never
touched again; an interrupted, failed or orphaned one (``running`` with a dead process) is
continued from its last committed turn.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from personae.batch.rows import BatchRow, StoredVariant, batch, claim_batch, create_batch, finish_batch, variants
from personae.batch.runner import BatchEvent, OpenBackend, RunFinished, run_variants
from personae.batch.sweep import LoadedSweep, Sweep, Variant, expand
from personae.batch.load import load_variant
from personae.config.validation import validate
from personae.config.yaml_source import parse_yaml
from personae.errors import UserError
from personae.liveness import process_alive
from personae.store.repo import Store


@dataclass(frozen=True)
class Plan:
    """A batch about to run: its id, the stored sweep, and the variants still to run."""

    batch_id: int
    sweep: LoadedSweep
    work: list[StoredVariant]
    done: int  # variants whose runs are already completed


def plan_new(store: Store, loaded: LoadedSweep) -> Plan:
    all_variants = expand(loaded)
    check_variants(all_variants)
    batch_id = create_batch(store, loaded, all_variants)
    return Plan(batch_id, loaded, variants(store, batch_id), 0)


def check_variants(all_variants: list[Variant]) -> None:
    """Load each scenario with each variant's variables and options once, before anything is
    stored: a missing or unknown variable, or an option a scenario refuses, is the loader's own
    message (exit 2) instead of a batch of failed runs."""
    seen: set[str] = set()
    for variant in all_variants:
        mark = repr((variant.path, variant.variables, variant.options, variant.personas))
        if mark not in seen:
            seen.add(mark)
            load_variant(variant)


def plan_resume(store: Store, batch_id: int) -> Plan:
    """What is left of ``batch_id``; refused while another process still runs it."""
    row = batch(store, batch_id)
    if row.pid is not None and process_alive(row.pid, row.started_at):
        raise UserError(
            f"Batch {batch_id} is still running in process {row.pid} on this machine. Resuming "
            f"it now would run its variants twice. Stop it first (Ctrl-C in its terminal, or "
            f"kill {row.pid}), or wait for it."
        )
    stored = variants(store, batch_id)
    left = [v for v in stored if v.run_status != "completed"]
    if not left and row.status == "completed":
        raise UserError(
            f"Batch {batch_id} already completed: all {row.variants} variants have finished "
            f"runs. See them with: personae batch report {batch_id}"
        )
    if not claim_batch(store, batch_id, expected_pid=row.pid):
        raise UserError(f"Batch {batch_id} changed while resuming it (another `personae batch resume`?).")
    return Plan(batch_id, stored_sweep(row), left, len(stored) - len(left))


def stored_sweep(row: BatchRow) -> LoadedSweep:
    """The sweep as stored: its endpoints are what a resume needs (the variants carry their
    resolved scenario paths), so scenario files are not looked up again."""
    label = row.sweep_path or f"<sweep of batch {row.id}>"
    sweep = validate(Sweep, parse_yaml(row.sweep_yaml, label))
    base = Path(row.sweep_path).parent if row.sweep_path else Path.cwd()
    return LoadedSweep(sweep, Path(row.sweep_path) if row.sweep_path else None, row.sweep_yaml, base)


def execute(
    store: Store, db: str | None, plan: Plan, open_backend: OpenBackend
) -> Generator[BatchEvent, None, None]:
    """Run the plan's variants, yielding their events; the batch row says how it ended:
    ``completed`` when every variant has a completed run, ``failed`` when one failed,
    ``interrupted`` when stopped (or the generator closed) before the end."""
    finished: list[RunFinished] = []
    status = "interrupted"
    try:
        for event in run_variants(db, plan.work, list(plan.sweep.sweep.endpoints), open_backend):
            if isinstance(event, RunFinished):
                finished.append(event)
            yield event
        stored = variants(store, plan.batch_id)
        if all(v.run_status == "completed" for v in stored):
            status = "completed"
        elif any(f.status == "interrupted" for f in finished):
            status = "interrupted"
        else:
            status = "failed"
    finally:
        finish_batch(store, plan.batch_id, status)
