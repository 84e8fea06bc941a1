"""``personae serve`` and ``personae db metadata``: the database in a browser, ours or Datasette's.

Thin: the viewer is ``personae/web`` (pages, app, server); this module parses flags and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personae.cli.options import DbOption
from personae.cli.output import out, shown, user_errors, write_out
from personae.errors import UserError


@user_errors
def serve(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on (0: any free one).")] = 8765,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on. Anything but loopback (127.0.0.1, ::1, "
                     "localhost) needs the access token printed at start."),
    ] = "127.0.0.1",
) -> None:
    """Open the database in a browser: runs, transcripts (live while a run goes on), each
    turn's prompt and what changed, the memory graph, search. Read-only."""
    from personae.web.serve import Address, address, serve

    if not host.strip():
        raise UserError("--host is empty: give an address such as 127.0.0.1 (the default) or 0.0.0.0.")

    def announce(path: str, where: Address) -> None:
        out.print(f"Personae viewer on {shown(path)} (read-only)", highlight=False)
        out.print(f"Open {where.url}", markup=False)
        if where.token:
            out.print("Beyond loopback: every page needs this token (it is in the address above).", markup=False)
        out.print("Ctrl-C stops it.", markup=False)

    serve(db, address(host, port), announce)


@user_errors
def db_metadata(
    db: DbOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Datasette metadata for the database: column descriptions and canned queries (tokens per
    persona, cache reuse per call, facts still valid): datasette personae.db -m FILE."""
    from personae.store.db import database_url, display_path
    from personae.web.datasette import metadata

    name = Path(display_path(database_url(db))).stem or "personae"
    write_out(json.dumps(metadata(name), ensure_ascii=False, indent=2) + "\n", output, "Datasette metadata")
