"""The ``personae`` command: parse arguments, call the library, render with rich.

This module only assembles the app: every command is a plain function in one of the command
modules, registered below in the order ``--help`` lists them, under its help panel. Errors a user
can act on become a message and an exit code in ``output.user_errors``, and only there.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from personae.cli import (
    batch_commands,
    db_commands,
    eval_commands,
    file_commands,
    import_commands,
    inspect_commands,
    models_commands,
    run_commands,
    serve_commands,
    web_commands,
)
from personae.cli.output import OurUsageErrors
from personae.cli.run_values import PairedOptions

app = typer.Typer(
    help="Personae: YAML-defined personas deliberating on one local model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OurUsageErrors,
)


def _flags_without_type_labels() -> None:
    """Typer's help prints a type beside every parameter: `<bool>` even for a plain flag such as
    --quiet or --help, which takes no value, `<list[Path]>` beside `FILE...`, and `<int range>
    [1<=x<=1000]` beside a bounded number. The type column is left empty for flags and for
    arguments that name themselves with a metavar, and a number is just `<int>`."""
    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich
    argument_type = TyperArgument.display_type_rich

    def for_option(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        label = option_type(self, ctx)
        return label.replace(" range", "") if isinstance(label, str) else label

    def no_range(self: TyperOption) -> str | None:
        return None

    def for_argument(self: TyperArgument, ctx: Any) -> str | None:
        return None if self.metavar else argument_type(self, ctx)

    TyperOption.display_type_rich = for_option  # type: ignore[method-assign]
    # "<int range> [1<=x<=1000]" beside --retries is noise to a reader; a value out of range is
    # still refused, and the error names the bounds.
    TyperOption._get_number_range_help_str = no_range  # type: ignore[method-assign]
    TyperArgument.display_type_rich = for_argument  # type: ignore[method-assign, assignment]


_flags_without_type_labels()


def _no_pydantic_for_absent_values() -> None:
    """Typer converts each option's value with a pydantic TypeAdapter, built on first use, and
    builds it even for an option the user did not give (value None), which its
    ``RuntimeParam.coerce`` then returns as None without asking the adapter. Importing pydantic
    for that is a third of `personae db path`'s and `personae runs`' start-up; so an absent
    single value is answered None here, as typer answers it, and the adapter is built the first
    time a value is given (its conversions and error messages unchanged). A typer without this
    machinery is left as it is."""
    from typer import core

    parameter = getattr(core, "_TyperParameter", None)
    build: Any = getattr(parameter, "get_runtime_param", None)
    if parameter is None or build is None:
        return

    class Deferred:
        def __init__(self, owner: Any) -> None:
            self.owner = owner

        def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
            if value is None and not (param.multiple or param.nargs == -1):
                return None
            return build(self.owner).coerce(value, param=param, ctx=ctx)

    def deferred(self: Any) -> Any:
        return self._runtime_param or Deferred(self)

    parameter.get_runtime_param = deferred


_no_pydantic_for_absent_values()


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
app.command(rich_help_panel="Run", cls=PairedOptions)(run_commands.run)
app.command(rich_help_panel="Run")(run_commands.resume)
app.command(rich_help_panel="Run")(run_commands.replay)
app.command("eval", rich_help_panel="Run")(eval_commands.eval_)
app.command(rich_help_panel="Inspect")(inspect_commands.runs)
app.command(rich_help_panel="Inspect")(inspect_commands.show)
app.command(rich_help_panel="Inspect")(inspect_commands.search)
app.command(rich_help_panel="Inspect")(inspect_commands.export)
app.command(rich_help_panel="Manage")(db_commands.delete)
app.command(rich_help_panel="Inspect")(inspect_commands.graph)
app.command(rich_help_panel="Inspect")(inspect_commands.score)
app.command(rich_help_panel="Inspect")(web_commands.serve)
app.command(rich_help_panel="Inspect")(eval_commands.evals)
app.command(rich_help_panel="Files")(file_commands.validate)
app.command(rich_help_panel="Files")(file_commands.personas)
app.command(rich_help_panel="Files")(file_commands.scenarios)
app.command(rich_help_panel="Files")(file_commands.schema)
app.command(rich_help_panel="Files")(file_commands.init)
app.command(rich_help_panel="Files")(file_commands.new)
app.command(rich_help_panel="Setup")(db_commands.doctor)
app.command(rich_help_panel="Setup")(models_commands.models)

db_app = typer.Typer(
    help="Where the database is, and upgrading an older one.", no_args_is_help=True
)
db_app.command("path")(db_commands.db_path)
db_app.command("upgrade")(db_commands.db_upgrade)
db_app.command("metadata")(web_commands.db_metadata)
app.add_typer(db_app, name="db", rich_help_panel="Inspect")

import_app = typer.Typer(
    help="Bring a crew from another framework as persona and scenario files.", no_args_is_help=True
)
import_app.command("crewai")(import_commands.crewai)
app.add_typer(import_app, name="import", rich_help_panel="Files")
batch_app = typer.Typer(
    cls=batch_commands.DefaultRun, no_args_is_help=True,
    help="Sweeps: `personae batch SWEEP.yaml` runs every variant; resume, report and list them.",
)
batch_app.command("run")(batch_commands.run)
batch_app.command("resume")(batch_commands.resume)
batch_app.command("report")(batch_commands.report)
batch_app.command("list")(batch_commands.batches)
app.add_typer(batch_app, name="batch", rich_help_panel="Run")
app.command("batches", rich_help_panel="Inspect")(batch_commands.batches)
model_app = typer.Typer(help="The embedded model as a server other tools can use.", no_args_is_help=True)
model_app.command("serve")(serve_commands.serve)
app.add_typer(model_app, name="model", rich_help_panel="Setup")


def main() -> None:
    app()
