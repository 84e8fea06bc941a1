"""Everything the commands send out: the two consoles, inert text, and our errors as exit codes.

Errors a user can act on (``PersonaeError``) become one paragraph and an exit code here, and only
here: 1 runtime failure, 2 bad input or usage, 130 interrupted. ``PERSONAE_DEBUG=1`` re-raises
them with their traceback.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from personae.cli.tabular import Format
from personae.cli.terminal import inert
from personae.errors import ConfigProblems, PersonaeError, UserError

# emoji=False: ":name:" in a reply or a name stays text (see personae/cli/terminal.py).
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def shown(value: object) -> str:
    """Any text that is not our own, for a rich console: inert and with its markup escaped."""
    return inert(value, markup=True)


def write(text: str) -> None:
    """Documents we print whole (show, graph, export, replay --format json|csv|tsv, the
    listings' json|csv|tsv) go out inert too; files written with -o keep the text as stored."""
    sys.stdout.write(inert(text))


def write_out(text: str, output: Path | None, what: str) -> None:
    """stdout (inert, as every document we print), or the file of ``-o`` as stored (a short note
    on stdout then)."""
    if output is None:
        write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {output}: {exc.strerror or exc}. Choose another -o path.") from None
    out.print(f"wrote {inert(output)} ({what})", markup=False)


def output_format(chosen: Format | None) -> Format:
    """What to print when the user did not say: a table for a person, TSV for a pipe."""
    if chosen is not None:
        return chosen
    return Format.table if out.is_terminal else Format.tsv


def db_flag(db: str | None) -> str:
    """The commands printed for the user name the same file, quoted for a shell to paste."""
    return f" --db {shlex.quote(db)}" if db else ""


def print_error(exc: PersonaeError) -> None:
    """One paragraph per problem (a file with several gets each its own ``Error:``), then how
    many there were."""
    if not isinstance(exc, ConfigProblems):
        err.print(f"[bold red]Error:[/] {shown(str(exc))}")
        return
    for problem in exc.problems:
        err.print(f"[bold red]Error:[/] {shown(str(problem))}")
    err.print(shown(exc.summary))


def user_errors(command: F) -> F:
    """Our own errors become a message and an exit code; bugs keep their traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PersonaeError as exc:
            if os.environ.get("PERSONAE_DEBUG"):
                raise
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]Interrupted.[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# click's exceptions, wherever this typer keeps click (its own copy, or the click package).
_click_errors = sys.modules[typer.BadParameter.__module__]


def usage_message(exc: Any) -> str:
    """A usage error (unknown option, bad value, missing argument) as one paragraph in our own
    style: what is wrong, the command's usage line, and where its help is."""
    message = str(exc.format_message()).replace("Value error, ", "").strip()
    if message and message[-1] not in ".?!":
        message += "."
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    usage = ctx.get_usage().replace("Usage: ", "").strip()
    return f"{message} Usage: {usage} (see `{ctx.command_path} --help`)."


class OurUsageErrors(TyperGroup):
    """The app's group: usage errors are printed as Personae's own errors are (``Error:``, one
    paragraph, exit 2), not in a framed box; every command registered on the app gets this."""

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None,
        complete_var: str | None = None, standalone_mode: bool = True,
        windows_expand_args: bool = True, **extra: Any,
    ) -> Any:
        forward = dict(extra, windows_expand_args=windows_expand_args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **forward)
        try:
            result = super().main(args, prog_name, complete_var, False, **forward)
        except _click_errors.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `personae` alone: the help
                exc.show()
            else:
                err.print(f"[bold red]Error:[/] {shown(usage_message(exc))}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("[yellow]Aborted.[/]")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)
