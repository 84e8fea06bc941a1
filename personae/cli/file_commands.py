"""The commands about persona and scenario files: ``validate``, ``personas``, ``scenarios``,
``schema``, ``init`` and ``new``. None of them opens the database or a model server.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from personae.cli.options import AllowDirOption
from personae.cli.output import err, out, shown, user_errors
from personae.cli.terminal import inert
from personae.errors import UserError


class FileKind(str, Enum):
    """What ``schema`` describes and ``new`` writes."""

    persona = "persona"
    scenario = "scenario"


@user_errors
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Persona or scenario files.")],
    allow_dir: AllowDirOption = None,
) -> None:
    """Check persona and scenario files; exit 2 if any is invalid."""
    from personae.config import validate_file
    from personae.errors import ConfigError

    failed = 0
    for path in files:
        try:
            out.print(f"[green]ok[/] {shown(str(path))}: {shown(validate_file(path, allowed_dirs=allow_dir or ()))}")
        except ConfigError as exc:
            failed += 1
            err.print(f"[bold red]Error:[/] {shown(str(exc))}")
    if failed:
        raise typer.Exit(2)


@user_errors
def personas(
    folder: Annotated[Path, typer.Option(help="Also list personas from this folder.")] = Path("personas"),
) -> None:
    """List the built-in personas and those in ./personas; a local one with a built-in's name
    is the one scenarios get (after personas/ beside the scenario), and the listing says so."""
    from personae.config import builtin_dir, builtin_personas, load_persona_file

    local = []
    if folder.is_dir() and folder.resolve() != (builtin_dir() / "personas").resolve():
        local = [
            (path, load_persona_file(path, folder=folder))
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        ]
    local_names = {persona.name: path for path, persona in local}
    table = Table()
    for column in ("name", "description", "from"):
        table.add_column(column)
    for path, persona in local:
        note = " (used instead of the built-in)" if persona.name in builtin_personas() else ""
        table.add_row(Text(inert(persona.name)), Text(inert(persona.description)), Text(inert(f"{path}{note}")))
    for persona in builtin_personas().values():
        shadow = local_names.get(persona.name)
        where = f"built-in (not used: {inert(shadow)} has this name)" if shadow else "built-in"
        table.add_row(
            Text(inert(persona.name)), Text(inert(persona.description)),
            Text(where, style="dim" if shadow else ""),
        )
    out.print(table)


@user_errors
def scenarios(
    folder: Annotated[Path, typer.Option(help="Also list scenarios from this folder.")] = Path("scenarios"),
) -> None:
    """List the scenarios `personae run NAME` finds: those in ./scenarios, then the built-ins."""
    from personae.config import load_scenario
    from personae.config.catalog import scenario_files
    from personae.errors import ConfigError

    table = Table()
    for column in ("name", "goal", "from"):
        table.add_column(column)
    files = scenario_files(folder)
    local = {f.name: f.path for f in files if not f.builtin}
    for file in files:
        try:
            goal = load_scenario(file.path, require_values=False).scenario.goal.strip().splitlines()[0]
        except ConfigError as exc:
            goal = f"(invalid: {str(exc)[:120]})"
        if file.builtin:
            shadow = local.get(file.name)
            where = f"built-in (not used: {shadow} has this name)" if shadow else "built-in"
        else:
            where = str(file.path)
        table.add_row(Text(inert(file.name)), Text(inert(goal)), Text(inert(where)))
    out.print(table)


@user_errors
def schema(kind: Annotated[FileKind, typer.Argument()]) -> None:
    """Print the JSON Schema of persona or scenario files, for editor autocompletion."""
    from personae.config import json_schema

    sys.stdout.write(json.dumps(json_schema(kind.value), indent=2) + "\n")


@user_errors
def init(folder: Annotated[Path, typer.Argument()] = Path(".")) -> None:
    """Copy the example personas/ and scenarios/ into FOLDER (never overwriting a file)."""
    from personae.config import builtin_dir

    source = builtin_dir()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder. Pass a folder to write the examples into.")
    for sub in ("personas", "scenarios"):
        for path in sorted((source / sub).rglob("*")):
            if not path.is_file() or path.suffix not in {".yaml", ".yml", ".md", ".txt"}:
                continue
            target = folder / sub / path.relative_to(source / sub)
            if target.exists():
                out.print(f"kept {shown(target)} (already exists)")
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            except OSError as exc:  # a file where a folder goes, no permission, disk full
                raise UserError(
                    f"Cannot write {target}: {exc.strerror or exc}. Choose another folder, or "
                    "move what is in the way."
                ) from None
            out.print(f"wrote {shown(target)}")
    example = shlex.quote(str(folder / "scenarios" / "cache-review.yaml"))
    out.print(f"Next: personae run {shown(example)}")


@user_errors
def new(
    kind: Annotated[FileKind, typer.Argument(help="persona or scenario")],
    name: Annotated[str, typer.Argument(help="Its name: Reviewer, db-migration.")],
    folder: Annotated[
        Path | None, typer.Option(help="Where to write it (default: ./personas or ./scenarios).")
    ] = None,
) -> None:
    """Write a commented template (with the schema line for editors) to fill in."""
    import re
    from importlib.resources import files

    from personae.config import json_schema

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}", name):
        raise UserError(
            f"{name!r} cannot name a {kind.value}: use letters, digits, spaces, '-' or '_' "
            "(at most 64, starting with a letter or digit)."
        )
    target_dir = folder or Path(f"{kind.value}s")
    target = target_dir / f"{re.sub(r'[ _]+', '-', name.strip()).lower()}.yaml"
    if target.exists():
        raise UserError(f"{target} already exists; nothing was written. Choose another name or --folder.")
    template = files("personae") / "templates" / f"{kind.value}.yaml"
    text = template.read_text(encoding="utf-8").format(name=name.strip())
    schema = target_dir / f"{kind.value}.schema.json"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if not schema.exists():
            schema.write_text(json.dumps(json_schema(kind.value), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {target}: {exc.strerror or exc}. Choose another --folder.") from None
    out.print(
        f"wrote {inert(target)} (and {inert(schema)} for editors); check it with: "
        f"{inert(f'personae validate {shlex.quote(str(target))}')}",
        markup=False,
    )
