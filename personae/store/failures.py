"""What a database failure means to the user: one paragraph with the path and the fix.

Every error the database driver raises passes through here, at one edge: opening the store
(``open_engines``) and, for everything after, the engines' ``handle_error`` event (``watch``). So
no command has to know that SQLite says "unable to open database file" both for a read-only
folder and for a read-only file system, and a run loop only has to catch ``StoreError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import ExceptionContext

from personae.errors import StoreConflict, StoreError

ELSEWHERE = "or point --db / PERSONAE_DB at another file"


def usage_error(message: str) -> StoreError:
    """A database named wrongly (a folder, a URL nobody can open): the user's input, exit 2."""
    error = StoreError(message)
    error.exit_code = 2
    return error


def explain(error: BaseException, where: str) -> StoreError | None:
    """``error`` (a driver, SQLAlchemy or OS error) for the database at ``where`` (its path, or
    its URL without a password) as a ``StoreError``; returned unchanged if it already is one.
    None when it is not about the database's state (a query the caller handles, such as FTS5
    syntax, or a bug, which keeps its traceback)."""
    if isinstance(error, StoreError):
        return error
    text = str(getattr(error, "orig", None) or error).strip()
    lowered = text.lower()
    if isinstance(error, exc.IntegrityError):
        return StoreConflict(
            f"Another process wrote to the same run in {where} at the same moment ({text}). "
            "Two processes are continuing one run (a `personae resume --force` while it was "
            "still running?). Stop all but one; the rows already committed are intact."
        )
    if "database or disk is full" in lowered or "no space left" in lowered:
        return StoreError(
            f"The disk holding the database {where} is full (SQLite: {text}). Nothing committed "
            "is lost. Free some space (or move the file to a larger disk), then continue."
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open database" in lowered:
        return StoreError(
            f"Cannot open the database {where} for writing ({_why_unwritable(where)}; SQLite: "
            f"{text}). SQLite needs to write the file and create {Path(where).name}-wal and "
            f"{Path(where).name}-shm beside it, even to read. Make the folder and file writable, "
            f"{ELSEWHERE} on a writable disk."
        )
    if "not a database" in lowered or "malformed" in lowered or "file is encrypted" in lowered:
        return StoreError(
            f"{where} is not a SQLite database Personae can read: it is another kind of file, or "
            f"a damaged or truncated database (SQLite: {text}). Point --db / PERSONAE_DB at a "
            "Personae database or a new file name; if this was yours, restore it from a backup "
            f"(a {Path(where).name}.*.bak beside it) or try `sqlite3 {where} .recover`."
        )
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"The database {where} stayed locked by another process for too long ({text}). "
            "Wait for the other `personae` command to finish, then try again."
        )
    if isinstance(error, ModuleNotFoundError):
        return StoreError(
            f"The database driver for {where} is not installed ({text}). Install it "
            "(PostgreSQL: pip install 'psycopg[binary]'), or use a SQLite file with --db PATH."
        )
    if isinstance(error, (exc.NoSuchModuleError, exc.ArgumentError)):
        return usage_error(
            f"--db {where} is not a database Personae can open ({text}). Give a file path, or "
            "a SQLAlchemy URL such as sqlite:///runs.db or postgresql://user@host/dbname."
        )
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return StoreError(f"The connection to the database {where} was lost ({text}). Try again.")
    return None


def explain_open(error: BaseException, where: str) -> StoreError:
    """``explain``, for a failure to open: then any error is the database's, never a query's."""
    return explain(error, where) or StoreError(
        f"The database {where} failed: {str(getattr(error, 'orig', None) or error).strip()}. "
        f"Check that it is a Personae database on a healthy, writable disk, {ELSEWHERE}."
    )


def _why_unwritable(where: str) -> str:
    path = Path(where)
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"the file system holding {folder} is mounted read-only"
    except OSError:
        pass
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return f"the folder {folder} is read-only"
    return "the file or its folder cannot be written"


def watch(engine: Engine, where: str) -> None:
    """Turn every driver error on ``engine`` into a ``StoreError`` as it happens: one place for
    every read and write, whichever command or transaction it came from."""

    @event.listens_for(engine, "handle_error")
    def _explain(context: ExceptionContext) -> None:
        if not isinstance(context.original_exception, Exception):
            return  # Ctrl-C or SIGTERM mid-statement: an interrupt, not a database failure
        explained = explain(context.sqlalchemy_exception or context.original_exception, where)
        if explained is not None:
            raise explained from context.original_exception
