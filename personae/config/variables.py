"""Scenario variables: `vars:` declares names and defaults, `{name}` placeholders use them.

One scenario serves many runs when what changes between them is a variable: the candidate to
judge, the budget, the question an evaluation asks. The rules, chosen so that nothing surprising
reaches a prompt:

- Only a scenario that has a ``vars:`` key is substituted at all. A scenario without one is used
  byte for byte as before, braces included, so the prompts of existing runs hash as they did.
- ``{name}`` (a Python identifier in braces) is a placeholder and must name a declared variable;
  ``{{`` and ``}}`` are literal braces (as in Python's ``str.format``). Any other brace — JSON
  such as ``{"a": 1}``, a lone ``}`` — is left alone.
- Substitution is one pass over the text as written: a value is inserted as text and never read
  again, so a value holding ``{other}`` or ``<|im_end|>`` stays exactly that text.

This module holds the pure text rules (no models, no files); ``substitution.py`` applies them to a
scenario and its personas and words the errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BeforeValidator

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
# `{{` and `}}` first, so `{{name}}` reads as literal braces around a word, not as a placeholder.
_TOKEN = re.compile(r"\{\{|\}\}|\{(" + NAME_PATTERN + r")\}")
_NAME = re.compile(NAME_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


def placeholders(text: str) -> Iterator[tuple[str, int]]:
    """Each placeholder of ``text``: (variable name, offset of its ``{``), in order."""
    for match in _TOKEN.finditer(text):
        if match.group(1) is not None:
            yield match.group(1), match.start()


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with every placeholder replaced by its value and ``{{``/``}}`` made single.

    Every placeholder must be in ``values`` (callers check first, to point at the line)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0)[0] if name is None else values[name]

    return _TOKEN.sub(one, text)


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def value_problem(value: str) -> str | None:
    """Why a variable's value cannot be used, or None. A value is any text, except what cannot
    be stored: a lone surrogate (what an argument that is not UTF-8 becomes in Python)."""
    bad = _SURROGATE.search(value)
    if bad:
        return f"it holds \\u{ord(bad.group()):04x}, which is not a character (is the text UTF-8?)"
    return None


def _default(value: Any) -> Any:
    """A default as YAML gives it: text, a number (kept as the text it reads as), or null."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | type(None)):
        raise ValueError(
            f"a variable's default is text, a number or null, not {type(value).__name__} "
            f"({value!r}); quote it to make it text"
        )
    return value if value is None or isinstance(value, str) else str(value)


def _names(value: Any) -> Any:
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str) or not is_name(name):
                raise ValueError(
                    f"{name!r} is not a variable name: use letters, digits and _ (not first a "
                    "digit), as in {topic} or {max_budget}"
                )
    return value


VarDefault = Annotated[str | None, BeforeValidator(_default)]
VarTable = Annotated[dict[str, VarDefault], BeforeValidator(_names)]
