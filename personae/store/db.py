"""Opening a database: the path, SQLite's pragmas, and automatic migration.

SQLite runs in WAL mode with a busy timeout so a CLI can read while a run writes and several runs
can share one file; writers take the write lock up front (BEGIN IMMEDIATE), which turns SQLite's
"database is locked" deadlock between two upgrading readers into a short wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError

from personae.errors import StoreError, UserError
from personae.store import failures
from personae.store.location import database_url, display_path
from personae.store.models import Base
from personae.store.quick import require_file
from personae.store.revisions import HEAD_QUERY, MIGRATIONS, shipped_head

if TYPE_CHECKING:  # Alembic is imported only when a schema is not at head (see at_head)
    from alembic.config import Config

BUSY_TIMEOUT_MS = 60_000


__all__ = [
    "Engines", "database_url", "display_path", "open_engines", "open_readonly", "shipped_head", "upgrade",
]


@dataclass
class Engines:
    """Two engines on one database: writes begin IMMEDIATE, reads begin DEFERRED."""

    write: Engine
    read: Engine
    url: str
    notice: str | None = None  # set when opening migrated an older database

    @property
    def where(self) -> str:
        """The database as messages name it: its path, or its URL without a password."""
        return _where(self.url)

    def dispose(self) -> None:
        self.write.dispose()
        self.read.dispose()


def open_engines(url: str, *, migrate: bool = True) -> Engines:
    """Both engines on ``url``, the schema brought up to date (``migrate``). Whatever fails, here
    or in any later statement on these engines, is a ``StoreError`` that names the database and
    the fix (``personae.store.failures``)."""
    where = _where(url)
    try:
        is_sqlite = make_url(url).get_backend_name() == "sqlite"
    except Exception as error:  # noqa: BLE001 - an unparsable URL is the user's input
        raise failures.usage_error(
            f"--db {url} is not a database Personae can open ({error}). Give a file path, or a "
            "SQLAlchemy URL such as sqlite:///runs.db or postgresql://user@host/dbname."
        ) from None
    if is_sqlite:
        _check_sqlite_path(Path(make_url(url).database or ""))
    engines: Engines | None = None
    try:
        write = _engine(url, immediate=True) if is_sqlite else create_engine(url)
        read = _engine(url, immediate=False) if is_sqlite else write
        for engine in {write, read}:
            failures.watch(engine, where)
        engines = Engines(write=write, read=read, url=url)
        if migrate:
            engines.notice = upgrade(engines)
        return engines
    except Exception as error:  # noqa: BLE001 - every failure to open becomes one paragraph
        if engines is not None:
            engines.dispose()
        raise failures.explain_open(error, where) from error


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL we opened
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, or None when there is none: what tells the file
    a store opened from another put at the same path."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _where(url: str) -> str:
    """How messages name the database: its path, or its URL without a password."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        return url
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or url
    return parsed.render_as_string(hide_password=True)


def _check_sqlite_path(path: Path) -> None:
    """Usage errors we can see before SQLite says "unable to open database file"."""
    if path.is_dir():
        raise failures.usage_error(
            f"The database path {path} is a folder, not a file. Name a file inside it "
            f"(--db {path / 'personae.db'}), or another file."
        )
    if not path.parent.is_dir():
        raise failures.usage_error(
            f"Cannot create the database {path}: the folder {path.parent} does not exist. "
            "Create it, or point --db / PERSONAE_DB at a writable location."
        )


def open_readonly(url: str) -> Engines:
    """Engines for a command that only reads (runs, show, search, graph, export, doctor).

    Such a command creates nothing and changes nothing: a missing file is an error that says
    where Personae looked, a SQLite file is opened for reading only (``query_only``; no -wal or
    -shm is left behind), and a file that is not a Personae database, or not at this version's
    schema, is named and left as it was: upgrading it is a writing command's job (``personae db
    upgrade``), after a backup."""
    where = _where(url)
    try:
        is_sqlite = make_url(url).get_backend_name() == "sqlite"
    except Exception as error:  # noqa: BLE001 - an unparsable URL is the user's input
        raise failures.explain_open(error, url) from None
    if is_sqlite:
        path = Path(make_url(url).database or "")
        if path.is_dir():
            _check_sqlite_path(path)
        require_file(path)
    try:
        engine = _engine(url, immediate=False, readonly=path) if is_sqlite else create_engine(url)
        failures.watch(engine, where)  # every driver error: one paragraph (store/failures.py)
    except Exception as error:  # noqa: BLE001
        raise failures.explain_open(error, where) from error
    engines = Engines(write=engine, read=engine, url=url)
    try:
        _require_head(engines)
    except BaseException:
        engines.dispose()
        raise
    return engines


def _require_head(engines: Engines) -> None:
    """Refuse, with the reason and the fix, a database this version cannot read as it is."""
    if at_head(engines.read):
        return
    from alembic.script import ScriptDirectory

    where = display_path(engines.url)
    try:
        current = current_revision(engines.read)
        has_tables = bool(inspect(engines.read).get_table_names())
    except DBAPIError as exc:
        raise UserError(
            f"Cannot read {where}: {exc.orig}. Is it a SQLite database? Point --db or "
            "PERSONAE_DB at the file `personae run` wrote."
        ) from None
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if current == head:
        return
    if current is not None:  # another program using Alembic is not an old or newer Personae
        try:
            _refuse_foreign(engines.url, current, set(inspect(engines.read).get_table_names()))
        except StoreError as exc:
            raise UserError(str(exc)) from None
    if current is None and not has_tables:  # an empty file, or a run creating it right now
        raise UserError(
            f"No database at {where}: the file is empty, no run has been stored there yet. Point "
            "--db or PERSONAE_DB at the file `personae run` wrote (it prints it on its first "
            "line), or start a run here."
        )
    if current is None:
        raise UserError(
            f"{where} is not a Personae database: it has tables but no Personae schema (no "
            "alembic_version). Nothing was changed. Point --db or PERSONAE_DB at the file "
            "`personae run` wrote."
        )
    if current not in {rev.revision for rev in scripts.walk_revisions()}:
        raise StoreError(
            f"The database {where} was written by a newer Personae (schema revision {current}; "
            f"this version knows up to {head}). Upgrade Personae (pip install -U personae), or "
            "use another --db."
        )
    raise StoreError(
        f"The database {where} has an older schema (revision {current}; this version reads "
        f"{head}). Upgrade it with `personae db upgrade` (a backup copy is made first); nothing "
        "was changed."
    )


def _engine(url: str, *, immediate: bool, readonly: Path | None = None) -> Engine:
    """A SQLite engine with our pragmas; ``readonly``: the file, opened for reads only (query_only)."""
    if readonly is None:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    else:
        import sqlite3
        from urllib.parse import quote

        # mode=rw, never creating (the file is checked to exist first), with every write refused
        # by query_only below: a mode=ro connection can neither checkpoint nor remove the -wal
        # and -shm files it makes a WAL database grow, so every `personae runs` would leave them
        # beside the file; this one lets SQLite's own last-close cleanup do it. A write-protected
        # file still opens, read-only, as SQLite does for mode=rw.
        uri = f"file:{quote(str(readonly))}?mode=rw"
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False),
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        if readonly is None:  # a reader leaves the journal mode as the file has it
            cursor.execute("PRAGMA journal_mode=WAL")
        else:
            cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def at_head(engine: Engine) -> bool:
    """Is the schema at this version's head? One plain query, so the commands that open a
    database at head (every one, most of the time) never import Alembic; anything else — no
    version table, another revision, an unreadable file — goes the slow, careful way."""
    try:
        with engine.connect() as connection:
            stored = connection.execute(text(HEAD_QUERY)).scalars().all()
    except Exception:  # noqa: BLE001 - the slow path names whatever is wrong
        return False
    return stored == [shipped_head()]


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engines: Engines, *, to: str = "head") -> str | None:
    """Bring the schema to ``to``; returns a sentence for the user when an existing database was
    upgraded (after a backup copy), None when nothing had to change or the file was new.

    Everything is decided under the write lock (BEGIN IMMEDIATE on SQLite), in the transaction
    that migrates: several processes opening a new file at once take turns, and each one after the
    first finds the schema done. Read outside the lock, a file another process is migrating looks
    half-made (tables, no version yet) and was taken for a foreign database.
    """
    if to == "head" and at_head(engines.read):
        return None
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config()
    scripts = ScriptDirectory.from_config(config)
    target = scripts.get_current_head() if to == "head" else to
    assert target is not None, "the package ships its migrations"
    if current_revision(engines.read) == target:  # the common case, without taking the lock
        return None
    with engines.write.begin() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current == target:  # another process migrated it while we waited for the lock
            return None
        tables = set(inspect(connection).get_table_names())
        _refuse_foreign(engines.url, current, tables)
        known = {rev.revision for rev in scripts.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"The database {display_path(engines.url)} was written by a newer Personae (schema "
                f"revision {current}; this version knows up to {scripts.get_current_head()}). "
                "Upgrade Personae (pip install -U personae), or use another --db."
            )
        notice = None
        if current is not None:
            backup = _backup(engines.url)
            notice = (
                f"Upgraded the database schema from {current or 'unversioned'} to {target}"
                + (f"; a copy of the old file is at {backup}." if backup else ".")
            )
        config.attributes["connection"] = connection
        command.upgrade(config, target)
    return notice


def _refuse_foreign(url: str, current: str | None, tables: set[str]) -> None:
    """A file of another program is never migrated, nor backed up beside. Every Personae
    database has its schema version from its first write, so tables without one are another
    program's (named like ours or not); and a schema version we do not know, on a file without
    our ``runs`` table, is another program that uses Alembic too — not a newer Personae."""
    where = display_path(url)
    theirs = {t for t in tables if t != "alembic_version" and not t.startswith("sqlite_")}
    if current is None and theirs:
        clash = sorted(theirs & _our_tables())
        named = f", yet tables named like ours ({', '.join(clash)})" if clash else f" ({_listed(theirs)})"
        raise StoreError(
            f"The database {where} belongs to another program: it has tables but no Personae "
            f"schema version{named}. Personae added nothing to it. Point --db / PERSONAE_DB at "
            "another file (a new name creates one)."
        )
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known and "runs" not in tables:
        raise StoreError(
            f"The database {where} belongs to another program: it carries an Alembic schema "
            f"version ({current}) that is not Personae's and none of Personae's tables. Personae "
            "added nothing to it. Point --db / PERSONAE_DB at another file (a new name creates one)."
        )


def _listed(tables: set[str], most: int = 5) -> str:
    names = sorted(tables)
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _our_tables() -> set[str]:
    return set(Base.metadata.tables)


def _backup(url: str) -> Path | None:
    if make_url(url).get_backend_name() != "sqlite":
        return None
    path = Path(make_url(url).database or "")
    if not path.is_file():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    # WAL contents are folded in by sqlite3's backup API, which a plain file copy would miss.
    import sqlite3

    source = sqlite3.connect(path)
    try:
        target = sqlite3.connect(backup)
        with target:
            source.backup(target)
        target.close()
    finally:
        source.close()
    return backup


