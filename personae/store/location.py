"""Where the database is, without opening it: ``--db``, ``PERSONAE_DB`` or ``./personae.db``.

Kept apart from ``db.py`` so that ``personae db path`` (and anything else that only names the
file) starts without importing SQLAlchemy or Alembic.
"""

from __future__ import annotations

import os
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def database_url(db: str | os.PathLike[str] | None) -> str:
    """``--db`` wins, then ``PERSONAE_DB``, then ``./personae.db``. A value with ``://`` is a
    SQLAlchemy URL (PostgreSQL for a shared team database); anything else is a SQLite file path."""
    if db is not None and str(db) != "":
        value, source = str(db), "--db"
    else:
        value, source = os.environ.get("PERSONAE_DB") or "personae.db", "PERSONAE_DB"
    if not value.strip() or any(not c.isprintable() for c in value):
        # A name of blanks (or with a control character) would create a file nobody can find.
        from personae.store import failures

        raise failures.usage_error(
            f"{source}={value!r} is not a database path: it is blank or holds a control "
            "character. Give a file path such as runs.db (or a URL such as "
            "sqlite:///runs.db), or unset PERSONAE_DB to use ./personae.db."
        )
    if "://" in value:
        return value
    return f"{SQLITE_PREFIX}{Path(value).expanduser().resolve()}"


def display_path(url: str) -> str:
    """A SQLite database as its file path; any other URL as given."""
    plain = url.startswith(SQLITE_PREFIX) and not any(c in url for c in "?#%")
    if plain:
        return url[len(SQLITE_PREFIX):] or url
    from sqlalchemy import make_url  # URLs with options or escapes: SQLAlchemy's own parser

    parsed = make_url(url)
    return parsed.database or url if parsed.get_backend_name() == "sqlite" else url
