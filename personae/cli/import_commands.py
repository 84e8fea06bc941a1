"""`personae import crewai DIR`: bring a crew from another framework as persona and scenario files.

The work is ``personae/importers``; this prints what was written, what could not be carried over
(every line made inert: the texts come from someone else's files) and the command that runs it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from personae.cli.output import err, out, shown, user_errors


@user_errors
def crewai(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="The CrewAI project (its agents.yaml and tasks.yaml "
                             "are found under it, e.g. in src/NAME/config/).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="OUTDIR",
                           help="Where to write personas/ and scenarios/ (default: the current folder).")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
) -> None:
    """Turn a CrewAI crew (agents.yaml, tasks.yaml) into personas and a phases scenario."""
    from personae.importers.crewai import import_project
    from personae.importers.files import write_converted

    converted = import_project(folder)
    written, summary = write_converted(converted, output, force=force)
    for path in written:
        out.print(f"wrote {shown(path)}")
    out.print(f"ok: {shown(summary)}")
    if converted.notes:
        err.print("[yellow]Not carried over:[/]")
        for note in converted.notes:
            err.print(f"  - {shown(note)}")
    scenario = shlex.quote(str(written[-1]))
    values = " ".join(f"--var {name}=..." for name in converted.variables)
    out.print(f"Next: personae run {shown(scenario)}" + (f" {shown(values)}" if values else ""))
