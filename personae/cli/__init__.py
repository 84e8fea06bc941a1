"""The ``personae`` command: parse arguments, call the library, render with rich.

This module only assembles the app: every command is a plain function in one of the command
modules, registered below in the order ``--help`` lists them, under its help panel. Errors a user
can act on become a message and an exit code in ``output.user_errors``, and only there.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from personae.cli import db_commands, file_commands, inspect_commands, run_commands, serve_commands

app = typer.Typer(
    help="Personae: YAML-defined personas deliberating on one local model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _flags_without_type_labels() -> None:
    """Typer's help prints a type beside every parameter: `<bool>` even for a plain flag such as
    --quiet or --help, which takes no value, and `<list[Path]>` beside `FILE...`. The type column
    is left empty for flags and for arguments that name themselves with a metavar."""
    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich
    argument_type = TyperArgument.display_type_rich

    def for_option(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else option_type(self, ctx)

    def for_argument(self: TyperArgument, ctx: Any) -> str | None:
        return None if self.metavar else argument_type(self, ctx)

    TyperOption.display_type_rich = for_option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = for_argument  # type: ignore[method-assign, assignment]


_flags_without_type_labels()


def _version(value: bool) -> None:
    if value:
        from personae import __version__

        sys.stdout.write(f"personae {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Personae: YAML-defined personas deliberating on one local model.

    The database is --db, else $PERSONAE_DB, else ./personae.db. NO_COLOR=1 turns colour off."""


# The order here is the order of `personae --help`, panel by panel as each first appears.
app.command(rich_help_panel="Run")(run_commands.run)
app.command(rich_help_panel="Run")(run_commands.resume)
app.command(rich_help_panel="Run")(run_commands.replay)
app.command(rich_help_panel="Inspect")(inspect_commands.runs)
app.command(rich_help_panel="Inspect")(inspect_commands.show)
app.command(rich_help_panel="Inspect")(inspect_commands.search)
app.command(rich_help_panel="Inspect")(inspect_commands.export)
app.command(rich_help_panel="Manage")(db_commands.delete)
app.command(rich_help_panel="Inspect")(inspect_commands.graph)
app.command(rich_help_panel="Inspect")(inspect_commands.score)
app.command(rich_help_panel="Files")(file_commands.validate)
app.command(rich_help_panel="Files")(file_commands.personas)
app.command(rich_help_panel="Files")(file_commands.scenarios)
app.command(rich_help_panel="Files")(file_commands.schema)
app.command(rich_help_panel="Files")(file_commands.init)
app.command(rich_help_panel="Files")(file_commands.new)
app.command(rich_help_panel="Setup")(db_commands.doctor)

db_app = typer.Typer(
    help="Where the database is, and upgrading an older one.", no_args_is_help=True
)
db_app.command("path")(db_commands.db_path)
db_app.command("upgrade")(db_commands.db_upgrade)
app.add_typer(db_app, name="db", rich_help_panel="Inspect")

model_app = typer.Typer(help="The embedded model as a server other tools can use.", no_args_is_help=True)
model_app.command("serve")(serve_commands.serve)
app.add_typer(model_app, name="model", rich_help_panel="Setup")


def main() -> None:
    app()
