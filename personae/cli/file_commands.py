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
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from personae.cli.options import AllowDirOption, FormatOption
from personae.cli.output import err, out, output_format, print_error, shown, user_errors, write
from personae.cli.tabular import Format
from personae.cli.tabular import render as render_rows
from personae.cli.views import one_line_table
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
    """Check persona and scenario files (exit 2 if any is invalid); for a scenario, print its
    turn plan — who speaks at each turn, where inputs land, where max_turns stops it — and the
    notes a run would print."""
    from personae.config import validate_file
    from personae.errors import ConfigError

    failed = 0
    for path in files:
        try:
            what = validate_file(path, allowed_dirs=allow_dir or ())
            out.print(f"[green]ok[/] {shown(str(path))}: {shown(what)}")
            if what.startswith("scenario"):
                print_plan(path, allow_dir or ())
        except ConfigError as exc:
            failed += 1
            print_error(exc)
    if failed:
        raise typer.Exit(2)


def print_plan(path: Path, allowed_dirs: Any) -> None:
    """The pre-flight of a valid scenario: its turn plan, then the notes a run would print."""
    from personae.config import load_scenario
    from personae.orchestrator.plan import plan_lines, turn_plan

    # The plan does not depend on variables' values: a scenario whose variables a run must give
    # is planned with its placeholders as written.
    plan = turn_plan(load_scenario(path, allowed_dirs=allowed_dirs, require_values=False))
    for line in plan_lines(plan):
        out.print(f"  {shown(line)}")
    for warning in plan.warnings:
        err.print(f"[yellow]Note:[/] {shown(warning)}")


AllOption = Annotated[
    bool, typer.Option("--all", "-a", help="Also list built-ins that a local file of the same name hides.")
]


@user_errors
def personas(
    folder: Annotated[Path, typer.Option(help="Also list personas from this folder.")] = Path("personas"),
    format: FormatOption = None,
    all_: AllOption = False,
) -> None:
    """List the personas scenarios find: those in ./personas, then the built-ins (one line each;
    a built-in hidden by a local file of its name only with --all)."""
    from personae.config import builtin_dir, builtin_personas, load_persona_file

    local = []
    if folder.is_dir() and folder.resolve() != (builtin_dir() / "personas").resolve():
        local = [
            (path, load_persona_file(path, folder=folder))
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        ]
    local_names = {persona.name: path for path, persona in local}
    rows = [
        {"name": persona.name, "description": persona.description, "from": str(path),
         "hides_builtin": persona.name in builtin_personas(), "hidden": False}
        for path, persona in local
    ] + [
        {"name": persona.name, "description": persona.description, "from": "built-in",
         "hides_builtin": False, "hidden": persona.name in local_names}
        for persona in builtin_personas().values()
    ]
    print_listing(rows, ("name", "description", "from", "hidden"), format, show_hidden=all_)


@user_errors
def scenarios(
    folder: Annotated[Path, typer.Option(help="Also list scenarios from this folder.")] = Path("scenarios"),
    format: FormatOption = None,
    all_: AllOption = False,
) -> None:
    """List the scenarios `personae run NAME` finds: those in ./scenarios, then the built-ins (one
    line each; a built-in hidden by a local file of its name only with --all)."""
    from personae.config import load_scenario
    from personae.config.catalog import scenario_files
    from personae.errors import ConfigError

    files = scenario_files(folder)
    local = {f.name for f in files if not f.builtin}
    rows = []
    for file in files:
        try:
            goal = " ".join(load_scenario(file.path, require_values=False).scenario.goal.split())
        except ConfigError as exc:
            goal = f"(invalid: {str(exc)[:120]})"
        rows.append({
            "name": file.name, "goal": goal, "from": "built-in" if file.builtin else str(file.path),
            "hidden": file.builtin and file.name in local,
        })
    print_listing(rows, ("name", "goal", "from", "hidden"), format, show_hidden=all_)


def print_listing(
    rows: list[dict[str, Any]], columns: tuple[str, ...], format: Format | None, *, show_hidden: bool
) -> None:
    """A listing as ``ollama list`` prints one: a line per item cut to the terminal's width, or
    whole values as TSV when piped (csv, json on request). Hidden items only when asked for."""
    rows = [r for r in rows if show_hidden or not r.get("hidden")]
    fmt = output_format(format)
    if fmt is not Format.table:
        write(render_rows(rows, columns, fmt))
        return
    out.print(one_line_table(rows, [c for c in columns if c != "hidden" or show_hidden], out.width))


@user_errors
def schema(kind: Annotated[FileKind, typer.Argument()]) -> None:
    """Print the JSON Schema of persona or scenario files, for editor autocompletion."""
    from personae.config import json_schema

    sys.stdout.write(json.dumps(json_schema(kind.value), indent=2) + "\n")


@user_errors
def init(folder: Annotated[Path, typer.Argument()] = Path(".")) -> None:
    """Copy the example personas/, scenarios/ and sweeps/ into FOLDER (never overwriting a file)."""
    from personae.config import builtin_dir

    source = builtin_dir()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder. Pass a folder to write the examples into.")
    for sub in ("personas", "scenarios", "sweeps"):
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
    from personae.config.names import HUMAN, is_reserved

    if kind is FileKind.persona and is_reserved(name):
        raise UserError(
            f"{name!r} cannot name a persona: {HUMAN} is the person taking part (scripted "
            "inputs, --interactive), and a persona of that name would be read as them. Choose "
            "another name, e.g. Customer or Stakeholder."
        )
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
