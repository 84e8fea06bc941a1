"""Parameters several commands share: their types, bounds and help text, and RUN as typed.

Numbers from the command line are bounded here, at the edge: beyond 64 bits SQLite (and beyond 32
llama.cpp) would fail with an OverflowError deep inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from personae.cli.tabular import Format
from personae.errors import UserError
from personae.limits import INT64_MAX

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported by the commands that open one
    from personae.store.repo import Store

AllowDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--allow-dir", metavar="DIR",
        help="Also let documents come from this folder (repeatable). By default they must lie in "
        "the scenario's folder or the project folder the command runs from.",
    ),
]

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database file or SQLAlchemy URL (default: $PERSONAE_DB, else ./personae.db)."),
]


FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format", "-f",
        help="table (a terminal's default), or json, csv, tsv (piped output's default: tsv, "
        "whole values, one record per line).",
        show_default=False,
    ),
]


def check_run_refs(value: Any) -> Any:
    """RUN as typed, checked at the edge like ``RunArgument``: an id from 0 to 2**63-1 (beyond 64
    bits SQLite would fail with an OverflowError deep inside) or ``last``; anything else is a
    usage error before any database is opened."""
    for ref in value if isinstance(value, list) else [value]:
        if ref is None or ref.strip().lower() == "last":
            continue
        try:
            number = int(ref)
        except ValueError:
            raise typer.BadParameter(
                f"expected a run id or `last`, not {ref!r}. List the runs with: personae runs"
            ) from None
        if not 0 <= number <= INT64_MAX:
            raise typer.BadParameter(f"{ref} is not a run id: ids run from 0 to {INT64_MAX}.")
    return value


def complete_run(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for RUN: `last` and the newest run ids of the database the command line
    names (its --db, else $PERSONAE_DB); nothing when there is none to read."""
    try:
        from personae.store.repo import Store

        with Store.open_readonly(ctx.params.get("db")) as store:
            ids = [str(r.id) for r in store.runs(100)]
    except Exception:  # noqa: BLE001 - completion must never print an error into a shell
        ids = []
    return [ref for ref in ("last", *ids) if ref.startswith(incomplete)]


def complete_scenario(incomplete: str) -> list[str]:
    """Shell completion for SCENARIO: the names `personae run NAME` finds (./scenarios, then the
    built-ins); a path is the shell's own business."""
    from personae.config.catalog import scenario_files

    return sorted({f.name for f in scenario_files() if f.name.startswith(incomplete)})


# Every RUN a command takes — argument or option — is one of these, so `last` means the same
# everywhere (new commands get it by using them) and a bad id is the same usage error.
RUN_HELP = "A run id, or `last` for the newest run."

RunArg = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN", help=RUN_HELP, show_default=False, callback=check_run_refs,
        autocompletion=complete_run,
    ),
]

RunArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN", help=RUN_HELP, show_default=False, callback=check_run_refs,
        autocompletion=complete_run,
    ),
]

RunOption = Annotated[
    str | None,
    typer.Option(
        "--run", metavar="RUN", help="Only this run: an id, or `last`.", callback=check_run_refs,
        autocompletion=complete_run,
    ),
]

def run_id_for(store: Store, ref: str | None, *, last: bool = False) -> int:
    """RUN (checked by ``check_run_refs``) as an id: ``last`` (also ``--last``) is the newest run
    in the database."""
    if last or (ref or "").strip().lower() == "last":
        newest = store.runs(1)
        if not newest:
            raise UserError(f"{store.path} has no runs yet, so there is no last one.")
        return int(newest[0].id)
    if ref is None:
        raise UserError("Name a run: personae show RUN (an id from `personae runs`, or `last`).")
    return int(ref)


def resumable_run_id(store: Store) -> int:
    """The run ``personae resume`` continues when none is named: the newest that was interrupted,
    failed, or left running by a process that is gone."""
    from personae.liveness import process_alive

    for row in store.runs():
        if row.status in ("interrupted", "failed"):
            return int(row.id)
        if row.status == "running" and not process_alive(row.pid, row.heartbeat_at or row.started_at):
            return int(row.id)
    raise UserError(
        f"{store.path} has no interrupted or failed run to resume. Name one: personae resume RUN "
        "(an id from `personae runs`)."
    )
