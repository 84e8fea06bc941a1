"""The commands about the database itself and the set-up around it: ``db path``, ``db upgrade``,
``delete`` and ``doctor``. Writing ones open an existing Personae database only: they never create
or convert a file by mistake.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from personae.cli.options import DbOption, check_run_refs, run_id_for
from personae.cli.output import out, shown, user_errors
from personae.cli.terminal import inert
from personae.errors import UserError


@user_errors
def delete(
    run_refs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Run ids (or `last`).", callback=check_run_refs)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    db: DbOption = None,
) -> None:
    """Delete runs with their messages, model calls and memory (their forks are kept)."""
    from personae.liveness import process_alive
    from personae.store.repo import Store
    from personae.words import count

    require_personae_database(db)  # never create or convert a file just to delete from it
    with Store.open(db) as store:
        ids = sorted({run_id_for(store, ref) for ref in run_refs})
        rows = [store.run(i) for i in ids]  # names the first unknown id, and deletes nothing
        live = [r.id for r in rows if r.status == "running" and process_alive(r.pid, r.heartbeat_at or r.started_at)]
        if live:
            raise UserError(
                f"Run {', '.join(map(str, live))} is running in process {rows[ids.index(live[0])].pid}; "
                "stop it (Ctrl-C) before deleting it. Nothing was deleted."
            )
        listing = ", ".join(f"{r.id} ({inert(r.scenario_name)}, {count(r.turns, 'turn')})" for r in rows)
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(
                    f"Deleting {listing} needs a yes: pass --yes (standard input is not a "
                    "terminal to ask on). Nothing was deleted."
                )
            if not typer.confirm(f"Delete run {listing} from {inert(store.path)}?", default=False):
                out.print("Nothing was deleted.")
                raise typer.Exit(1)
        store.delete_runs(ids)
        out.print(f"Deleted {count(len(ids), 'run')}: {listing}.", markup=False)


@user_errors
def doctor(
    model: Annotated[str | None, typer.Option(help="Ollama model to look for.")] = None,
    db: DbOption = None,
) -> None:
    """Check what Personae needs: a model server, the model, the database."""
    from personae.doctor import run_checks

    usable = True
    for check in run_checks(model=model, db=db):
        mark = "[green]ok[/]" if check.ok else ("[yellow]--[/]" if check.optional else "[red]!![/]")
        out.print(f"{mark} {shown(check.name)}: {shown(check.detail)}")
        if not check.ok and check.fix:
            out.print(f"   fix: {shown(check.fix)}")
        usable = usable and (check.ok or check.optional)
    if not usable:
        raise typer.Exit(1)


@user_errors
def db_path(db: DbOption = None) -> None:
    """Print the database's path (or URL), as --db / PERSONAE_DB / ./personae.db resolve it,
    without opening it: `datasette "$(personae db path)"`."""
    from personae.store.location import database_url, display_path

    sys.stdout.write(display_path(database_url(db)) + "\n")


@user_errors
def db_upgrade(db: DbOption = None) -> None:
    """Upgrade a database written by an older Personae to this version's schema (after a backup
    copy); read-only commands never do this themselves."""
    from personae.store.location import database_url, display_path
    from personae.store.repo import Store

    url = database_url(db)
    if require_personae_database(db):
        out.print(f"{shown(display_path(url))} is already at this version's schema.")
        return
    with Store.open(db) as store:
        out.print(shown(store.notice or f"{store.path} is at this version's schema."))


def require_personae_database(db: str | None) -> bool:
    """For a command that writes to an existing database: raise if the file is missing or not
    Personae's (the read-only check's errors); True if it is at this version's schema, False if
    it is an older Personae schema that opening it for writing will upgrade."""
    from personae.errors import StoreError
    from personae.store.db import database_url, open_readonly

    try:
        open_readonly(database_url(db)).dispose()
    except StoreError as exc:
        if "older schema" not in str(exc):
            raise
        return False
    return True
