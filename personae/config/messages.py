"""Error messages for persona and scenario files: one paragraph a person can act on.

Every ``ConfigError`` the loader raises is made here: where (file, line, column, field path),
what is wrong, and how to fix it. The small wording helpers (did you mean, a value as YAML shows
it, a field path) live beside it so every message words these things the same way.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from personae.config.models import Loc
from personae.errors import ConfigError, ConfigProblems

T = TypeVar("T")


def config_error(
    label: str,
    node: yaml.Node | None,
    path: str,
    problem: str,
    fix: str = "",
    *,
    line: int | None = None,
    column: int | None = None,
) -> ConfigError:
    """One paragraph: where (file, line, column, field), what is wrong, and how to fix it."""
    if node is not None:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
    where = label
    if line is not None:
        where += f", line {line}, column {column}"
    if path:
        where += f", at {path}"
    message = f"{where}: {problem}" + (f" {fix}" if fix else "")
    error = ConfigError(message)
    # Also as attributes, for callers that point an editor at the spot.
    error.file, error.line, error.column, error.field = (  # type: ignore[attr-defined]
        label, line, column, path,
    )
    return error


def did_you_mean(word: str, choices: list[str] | set[str]) -> str | None:
    """A near miss of ``word`` among ``choices``, never ``word`` itself nor a choice that reads
    the same (the same name in another Unicode normal form): suggesting the very name that
    failed helps nobody."""
    same = _reading(word)
    choices = sorted(c for c in choices if c != word and _reading(c) != same)
    for choice in choices:
        if choice.casefold() == word.casefold():
            return choice
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _reading(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def similar_file(wanted: Path, candidates: list[Path]) -> Path | None:
    """A near-miss file name, compared without extensions (so 'x.yaml' is not like 's.yaml')."""
    by_stem = {p.stem: p for p in sorted(candidates)}
    if wanted.stem in by_stem and by_stem[wanted.stem] != wanted:  # same name, other extension
        return by_stem[wanted.stem]
    guess = did_you_mean(wanted.stem, list(by_stem))
    return by_stem[guess] if guess else None


def unknown(what: str, value: str, guess: str | None) -> str:
    return f"unknown {what} '{value}'" + suggest(guess)


def suggest(guess: str | None) -> str:
    return f" — did you mean '{guess}'?" if guess else "."


def show_value(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true), cut short if long."""
    if isinstance(value, str):
        text = f"'{value}'"
    elif value is None or isinstance(value, bool):
        text = "null" if value is None else str(value).lower()
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_path(parts: Loc) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Problems:
    """The problems found so far in one file, so that a check can go on after one: each later
    check that does not depend on what failed still runs (``attempt``), and ``raise_all`` raises
    them together, in file order, at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.found: list[ConfigError] = []

    def add(self, exc: ConfigError) -> None:
        self.found.extend(exc.problems if isinstance(exc, ConfigProblems) else [exc])

    def attempt(self, check: Callable[[], T]) -> T | None:
        """``check()``, or None when it raised a ``ConfigError`` (kept for ``raise_all``)."""
        try:
            return check()
        except ConfigError as exc:
            self.add(exc)
            return None

    def raise_all(self) -> None:
        """Nothing, one error as it is, or every error at once (``ConfigProblems``), in file order:
        this file's by line and column, then those in files it names (a persona file)."""
        if not self.found:
            return
        files = list(dict.fromkeys([self.label, *(_field(e, "file") or "" for e in self.found)]))
        unique = list({str(e): e for e in self.found}.values())
        ordered = sorted(unique, key=lambda e: (
            files.index(_field(e, "file") or ""), _field(e, "line") or 0, _field(e, "column") or 0,
        ))
        if len(ordered) == 1:
            raise ordered[0]
        named = [f for f in files if f and any(_field(e, "file") == f for e in ordered)]
        raise ConfigProblems(ordered, " and ".join(named or [self.label]))


def _field(error: ConfigError, name: str) -> Any:
    """What ``config_error`` recorded on an error (None on a ConfigError made elsewhere)."""
    return getattr(error, name, None)
