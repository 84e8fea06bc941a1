"""A sweep's rows: the ``batches`` row and its ``batch_variants``, read and written through the
store's engines (each write one short BEGIN IMMEDIATE transaction, as the store's own).

The run of a variant is linked by ``Store.create_run`` itself (``NewRun.batch_variant_id``), in
the transaction that creates the run; nothing here creates runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from personae.batch.sweep import LoadedSweep, Variant
from personae.errors import UserError
from personae.store.models import BATCHES, RUNS, VARIANTS
from personae.store.reads import Reader
from personae.store.repo import Store, utcnow


@dataclass(frozen=True)
class BatchRow:
    id: int
    name: str
    sweep_path: str | None
    sweep_yaml: str
    status: str
    variants: int
    pid: int | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class StoredVariant:
    id: int
    variant: Variant
    run_id: int | None
    run_status: str | None  # the linked run's status, None without one


def create_batch(store: Store, loaded: LoadedSweep, variants: list[Variant]) -> int:
    """The batch row and all its variants, in one transaction."""
    with store.engines.write.begin() as connection:
        inserted = connection.execute(
            BATCHES.insert().values(
                name=loaded.sweep.name,
                sweep_path=str(loaded.path) if loaded.path else None,
                sweep_yaml=loaded.text,
                status="running",
                variants=len(variants),
                pid=os.getpid(),
                started_at=utcnow(),
            )
        ).inserted_primary_key
        assert inserted is not None
        batch_id = inserted[0]
        if variants:
            connection.execute(
                VARIANTS.insert(),
                [
                    {"batch_id": batch_id, "position": v.position, "key": v.key,
                     "settings": v.settings(), "run_id": None}
                    for v in variants
                ],
            )
    return int(batch_id)


def batch(reader: Reader, batch_id: int) -> BatchRow:
    with reader.engines.read.connect() as connection:
        row = connection.execute(select(BATCHES).where(BATCHES.c.id == batch_id)).one_or_none()
        if row is None:
            last = connection.execute(select(func.max(BATCHES.c.id))).scalar()
    if row is None:
        hint = f"batch ids go from 1 to {last}" if last else "this database has no batches yet"
        raise UserError(
            f"No batch {batch_id} in {reader.path} ({hint}). List them with: personae batches"
        )
    return BatchRow(**row._mapping)


def batches(reader: Reader) -> list[tuple[BatchRow, dict[str, int]]]:
    """Every batch, newest first, with how many of its variants' runs are in each status
    (``pending``: not started)."""
    with reader.engines.read.connect() as connection:
        rows = connection.execute(select(BATCHES).order_by(BATCHES.c.id.desc())).all()
        counts = connection.execute(
            select(VARIANTS.c.batch_id, RUNS.c.status, func.count())
            .select_from(VARIANTS.outerjoin(RUNS, RUNS.c.id == VARIANTS.c.run_id))
            .group_by(VARIANTS.c.batch_id, RUNS.c.status)
        ).all()
    by_batch: dict[int, dict[str, int]] = {}
    for batch_id, status, n in counts:
        by_batch.setdefault(batch_id, {})[status or "pending"] = n
    return [(BatchRow(**r._mapping), by_batch.get(r.id, {})) for r in rows]


def variants(reader: Reader, batch_id: int) -> list[StoredVariant]:
    with reader.engines.read.connect() as connection:
        rows = connection.execute(
            select(VARIANTS.c.id, VARIANTS.c.key, VARIANTS.c.position, VARIANTS.c.settings,
                   VARIANTS.c.run_id, RUNS.c.status)
            .select_from(VARIANTS.outerjoin(RUNS, RUNS.c.id == VARIANTS.c.run_id))
            .where(VARIANTS.c.batch_id == batch_id)
            .order_by(VARIANTS.c.position)
        ).all()
    return [
        StoredVariant(r.id, Variant.from_settings(r.key, r.position, dict(r.settings)), r.run_id, r.status)
        for r in rows
    ]


def claim_batch(store: Store, batch_id: int, *, expected_pid: int | None) -> bool:
    """Mark the batch running in this process, only if nobody changed its process since it was
    read: of two ``batch resume`` commands, one wins."""
    pid_matches = BATCHES.c.pid.is_(None) if expected_pid is None else BATCHES.c.pid == expected_pid
    with store.engines.write.begin() as connection:
        result = connection.execute(
            update(BATCHES).where(BATCHES.c.id == batch_id, pid_matches)
            .values(status="running", pid=os.getpid(), finished_at=None)
        )
        return bool(result.rowcount)


def finish_batch(store: Store, batch_id: int, status: str) -> None:
    with store.engines.write.begin() as connection:
        connection.execute(
            update(BATCHES).where(BATCHES.c.id == batch_id)
            .values(status=status, pid=None, finished_at=utcnow())
        )
