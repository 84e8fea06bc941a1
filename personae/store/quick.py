"""``personae runs`` without SQLAlchemy: the run listing read with the standard library's sqlite3.

A new user types ``personae runs`` often, and importing SQLAlchemy alone costs more than the
0.3 s its whole start-up may take. So a plain SQLite file (``--db``/``PERSONAE_DB`` a path)
whose schema is at this version's head is read here: the same statements the store runs
(compiled into ``listing_sql.py`` from ``store/listing.py``), opened as ``db.open_readonly``
opens it (mode=rw, ``query_only``, so no -wal/-shm stays behind), and the stored dates and JSON
converted as SQLAlchemy converts them. Everything else — another database, a URL with options,
a folder, an older or foreign schema, any SQLite error — returns None, and the caller takes the
SQLAlchemy way, which names the problem and its fix exactly as before.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from personae.errors import UserError
from personae.store import listing_sql
from personae.store.location import SQLITE_PREFIX, database_url
from personae.store.revisions import HEAD_QUERY, shipped_head

BUSY_TIMEOUT_MS = 60_000  # as store/db.py: wait for a writer rather than fail


class RunRow(SimpleNamespace):
    """A ``runs`` row with the attributes of ``models.Run`` (its column names)."""


_CONVERT: dict[str, Any] = {
    "datetime": datetime.fromisoformat,  # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC
    "json": json.loads,
    "bool": bool,
}


def require_file(path: Path) -> None:
    """A read-only command finds a database or says where it looked (it never creates one)."""
    if not path.is_file():
        raise UserError(
            f"No database at {path}: no run has been stored there yet. Point --db or "
            "PERSONAE_DB at the file `personae run` wrote (it prints it on its first line), "
            "or start a run here."
        )


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL (as ``database_url`` makes from a path); None
    for anything that needs SQLAlchemy's URL parser or is another database."""
    if not url.startswith(SQLITE_PREFIX) or any(c in url for c in "?#%"):
        return None
    rest = url[len(SQLITE_PREFIX):]
    return Path(rest) if rest and rest != ":memory:" else None


def run_listing(
    db: str | os.PathLike[str] | None, limit: int | None, *, human: str
) -> tuple[list[RunRow], dict[int, int]] | None:
    """The newest ``limit`` runs (all when None) and each one's persona turns (messages not by
    ``human``), as ``Reader.runs`` and ``Reader.persona_turns`` return them; None when this
    database is not one the fast path reads (see the module docstring)."""
    path = sqlite_path(database_url(db))
    if path is None or path.is_dir():
        return None
    require_file(path)
    try:
        connection = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
    except sqlite3.Error:
        return None
    try:
        connection.execute("PRAGMA query_only=ON")
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("BEGIN")  # one snapshot for the version check and both queries
        if [row[0] for row in connection.execute(HEAD_QUERY)] != [shipped_head()]:
            return None
        cursor = connection.execute(listing_sql.RUNS)
        names = [d[0] for d in cursor.description]
        fetched = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        rows = [_row(names, values) for values in fetched]
        return rows, _persona_turns(connection, [r.id for r in rows], human)
    except (sqlite3.Error, ValueError):  # the SQLAlchemy way explains what is wrong
        return None
    finally:
        connection.close()


def _row(names: Sequence[str], values: Sequence[Any]) -> RunRow:
    converted = {}
    for name, value in zip(names, values, strict=True):
        kind = listing_sql.CONVERTED.get(name)
        converted[name] = _CONVERT[kind](value) if kind is not None and value is not None else value
    return RunRow(**converted)


def _persona_turns(connection: sqlite3.Connection, run_ids: list[int], human: str) -> dict[int, int]:
    if not run_ids:
        return {}
    found = dict(connection.execute(
        listing_sql.PERSONA_TURNS, {"first": min(run_ids), "last": max(run_ids), "human": human}
    ).fetchall())
    return {r: int(found.get(r, 0)) for r in run_ids}
