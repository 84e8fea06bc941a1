"""Rendering a structured reply through the persona's ``output_template``.

A persona file is data, so its template renders in Jinja's immutable sandbox (no attribute
tricks, no mutation) with ``StrictUndefined``: a field the template names but the reply lacks is
an error we record, not an empty string. Autoescape is off because the result is plain text for
the other personas; the terminal and web views escape it when they show it.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def check_template(text: str) -> None:
    """Raise ``ValueError`` naming the problem when ``text`` is not a valid template."""
    try:
        _environment().parse(text)
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)  # a syntax error has one; other template errors not
        line = f" (line {lineno})" if lineno else ""
        raise ValueError(f"output_template is not a valid Jinja template{line}: {exc.message}") from None


def render_template(text: str, data: dict[str, Any]) -> str:
    """The reply as the template renders it; ``ValueError`` when it cannot be rendered."""
    try:
        return _environment().from_string(text).render(**data).strip()
    except TemplateError as exc:
        raise ValueError(f"output_template could not be rendered: {exc}") from None
