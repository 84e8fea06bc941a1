"""`--var NAME=VALUE` and `-o/--option KEY VALUE`: what one run gives a scenario, from the
command line. Any command that starts runs (``run``, and commands built on it) takes both.

``-o`` takes two words, as ``llm -o`` does. typer cannot declare a repeatable two-word option, so
a command that has one is registered with ``cls=PairedOptions``, which joins each ``-o KEY VALUE``
into the one word ``KEY=VALUE`` before typer reads the line (an option's name never holds ``=``).
The values stay text here; the loader types them (``config/overrides.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from personae.errors import UserError

VarOption = Annotated[
    list[str] | None,
    typer.Option(
        "--var", metavar="NAME=VALUE",
        help="A value for one of the scenario's `vars:` (repeatable); it is used as plain text.",
    ),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option", "-o", metavar="KEY VALUE",
        help="Override every persona's option for this run (repeatable), e.g. -o temperature 0.2 "
        "-o num_predict 250; -o stop TEXT adds a stop string.",
    ),
]

_OPTION_FLAGS = ("-o", "--option")


class PairedOptions(TyperCommand):
    """A command whose ``-o/--option`` takes KEY and VALUE as two words."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_option_pairs(args))


def join_option_pairs(args: list[str]) -> list[str]:
    """``-o KEY VALUE`` (and ``--option KEY VALUE``, ``--option=KEY VALUE``) -> ``--option
    KEY=VALUE``; ``-o KEY=VALUE`` is taken as written, everything after ``--`` is left alone. A
    KEY without its VALUE is left for :func:`option_values` to refuse with a message."""
    joined: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return joined + args[i:]
        if word in _OPTION_FLAGS and i + 2 < len(args) and "=" not in args[i + 1]:
            joined += ["--option", f"{args[i + 1]}={args[i + 2]}"]
            i += 3
        elif word.startswith("--option=") and i + 1 < len(args) and word.count("=") == 1:
            joined += ["--option", f"{word.removeprefix('--option=')}={args[i + 1]}"]
            i += 2
        else:
            joined.append(word)
            i += 1
    return joined


def variable_values(given: list[str] | None) -> dict[str, str] | None:
    """``--var`` words -> {name: value}; a word without ``=`` or a name given twice is refused."""
    values: dict[str, str] = {}
    for word in given or []:
        name, sep, value = word.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(
                f"--var {word!r}: write NAME=VALUE, e.g. --var topic='cache eviction' (quote a "
                "value that holds spaces)."
            )
        if name in values:
            raise UserError(
                f"--var {name} is given twice ({values[name]!r} and {value!r}). Give each "
                "variable once."
            )
        values[name] = value
    return values or None


def option_values(given: list[str] | None) -> dict[str, Any] | None:
    """``-o`` pairs (joined as KEY=VALUE) -> {key: value}; ``stop`` collects a list. A key given
    twice (other than stop) is refused: which one was meant?"""
    values: dict[str, Any] = {}
    for word in given or []:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UserError(
                f"-o {word!r} needs a value: -o KEY VALUE, e.g. -o temperature 0.2 (two words)."
            )
        if key == "stop":
            values.setdefault("stop", []).append(value)
        elif key in values:
            raise UserError(f"-o {key} is given twice ({values[key]!r} and {value!r}). Give it once.")
        else:
            values[key] = value
    return values or None
