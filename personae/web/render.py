"""The pages as HTML: one Jinja2 environment (autoescape on, strict undefined) for the server and
for the one-file export, and JSON made safe to sit inside a ``<script type="application/json">``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup


@cache
def environment() -> Environment:
    """Autoescaping everywhere: every value a template prints is text, model replies included."""
    return Environment(
        loader=PackageLoader("personae.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page(template: str, **context: Any) -> str:
    context.setdefault("export", None)
    return environment().get_template(template).render(**context)


def script_json(value: Any) -> Markup:
    """JSON for a data block: ``<``, ``>`` and ``&`` as escapes, so no text in it can close the
    ``<script>`` element or open a comment, whatever a model wrote."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)
