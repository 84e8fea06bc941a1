"""The statements every turn runs, at the driver's speed and with SQLAlchemy's meaning.

A turn stores about six rows (its message, memory node and edges, model calls, the run's totals).
Through SQLAlchemy Core each statement costs some 40 µs of Python before SQLite sees it, which
was a large share of Personae's per-turn budget (``benchmarks/overhead.py``). So on SQLite these
statements are compiled once by SQLAlchemy, for the engine's dialect, and run on the DBAPI
connection of the transaction the caller opened with SQLAlchemy: BEGIN IMMEDIATE, commit and
rollback stay SQLAlchemy's. Values go through the columns' own bind processors (JSON to text,
datetimes to SQLite's text format), so the stored values are exactly what Core and the ORM store;
a column left out of an insert gets its scalar default, as Core would give it, or NULL.

On any other database the same calls are plain SQLAlchemy Core (``connection.execute(insert(table),
rows)``): the reference the fast path must agree with, and a test stores the same turns both ways
and compares every row (``tests/test_store_fast_path.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

from personae.store import failures

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class Compiled:
    """One statement as SQLite's driver takes it: SQL text with positional parameters, the
    bind names in that order, and what to do to each value first."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    defaults: Mapping[str, Any]  # values for binds the caller may leave out

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, process in zip(self.names, self.processors):
            value = values[name] if name in values else self.defaults[name]
            out.append(value if process is None else process(value))
        return tuple(out)


def use_fast_path(dialect: Dialect) -> bool:
    """Only SQLite's own driver takes the compiled statements (``?`` parameters, one connection)."""
    return dialect.name == "sqlite" and dialect.paramstyle == "qmark"


class Statements:
    """The compiled statements of one engine, each made on first use. ``fast`` is False on
    databases other than SQLite: callers then go through Core (see the module docstring)."""

    def __init__(self, dialect: Dialect, where: str = "the database") -> None:
        self.dialect = dialect
        self.where = where  # the database's path or URL, for error messages
        self.fast = use_fast_path(dialect)
        self._inserts: dict[tuple[str, tuple[str, ...]], Compiled] = {}
        self._others: dict[int, tuple[UpdateBase, Compiled]] = {}

    def insert(self, table: Table, keys: tuple[str, ...]) -> Compiled:
        """INSERT INTO ``table`` of the columns ``keys`` (plus any with a default)."""
        found = self._inserts.get((table.name, keys))
        if found is None:
            found = self._inserts[(table.name, keys)] = self._compile(insert(table), keys, table)
        return found

    def statement(self, statement: UpdateBase) -> Compiled:
        """A statement built once by the caller, with named bind parameters."""
        found = self._others.get(id(statement))
        if found is None or found[0] is not statement:
            found = self._others[id(statement)] = (statement, self._compile(statement, (), None))
        return found[1]

    def _compile(
        self, statement: UpdateBase, keys: tuple[str, ...], table: Table | None
    ) -> Compiled:
        compiled = statement.compile(dialect=self.dialect, column_keys=list(keys) or None)
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        names = tuple(compiled.positiontup)
        processors = tuple(
            compiled.binds[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)
            for name in names
        )
        defaults = {}
        for name in names:
            column = table.c.get(name) if table is not None else None
            default = column.default if column is not None else None
            if default is not None and getattr(default, "is_scalar", False):
                defaults[name] = default.arg  # type: ignore[attr-defined]
        return Compiled(compiled.string, names, processors, defaults)


def insert_row(
    connection: Connection, statements: Statements, table: Table, values: Mapping[str, Any]
) -> int:
    """Insert one row; its new id."""
    if not statements.fast:
        result = connection.execute(insert(table), dict(values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]
    compiled = statements.insert(table, tuple(values))
    params = compiled.params(values)
    with _as_sqlalchemy_errors(statements, compiled, params):
        cursor = _driver(connection).execute(compiled.sql, params)
        row_id = cursor.lastrowid
        cursor.close()
    return int(row_id)


def insert_rows(
    connection: Connection,
    statements: Statements,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Insert rows that all have the same keys, in order (so their ids follow that order)."""
    if not rows:
        return
    if not statements.fast:
        connection.execute(insert(table), [dict(r) for r in rows])
        return
    keys = tuple(rows[0])
    if any(tuple(row) != keys for row in rows):
        raise ValueError(f"rows for {table.name} differ in their columns")
    compiled = statements.insert(table, keys)
    params = [compiled.params(r) for r in rows]
    with _as_sqlalchemy_errors(statements, compiled, params):
        _driver(connection).executemany(compiled.sql, params)


def fetch_one(
    connection: Connection,
    statements: Statements,
    statement: UpdateBase,
    values: Mapping[str, Any],
) -> tuple[Any, ...]:
    """Run a statement built once (bind parameters by name) that returns exactly one row."""
    if not statements.fast:
        return tuple(connection.execute(statement, dict(values)).one())
    compiled = statements.statement(statement)
    params = compiled.params(values)
    with _as_sqlalchemy_errors(statements, compiled, params):
        cursor = _driver(connection).execute(compiled.sql, params)
        rows = cursor.fetchall()  # to the end, so the statement is finished before the commit
        cursor.close()
    if len(rows) != 1:
        raise LookupError(f"expected one row, got {len(rows)}: {compiled.sql}")
    return tuple(rows[0])


def _driver(connection: Connection) -> Any:
    """The sqlite3 connection under SQLAlchemy's, inside the transaction SQLAlchemy began."""
    return connection.connection.driver_connection


@contextmanager
def _as_sqlalchemy_errors(
    statements: Statements, compiled: Compiled, params: Any
) -> Iterator[None]:
    """Driver errors leave as SQLAlchemy's (``IntegrityError`` …), as from Core; the caller's
    ``engine.begin()`` block then rolls the transaction back."""
    dbapi_error = statements.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        error = DBAPIError.instance(compiled.sql, params, exc, dbapi_error, dialect=statements.dialect)
        # The engines' handle_error does not see statements run on the driver directly: the
        # same explanation is applied here (personae.store.failures).
        raise (failures.explain(error, statements.where) or error) from exc
