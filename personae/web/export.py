"""``personae export RUN -f html``: the run page, frozen into one file that opens offline.

Styles, scripts and the graph's data are inlined; a Content-Security-Policy meta tag lets only
those exact scripts run (by their SHA-256), so nothing a model wrote can run even if it were not
escaped. Needs only Jinja2 (a core dependency): no web server is imported here.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from markupsafe import Markup

from personae.store.repo import Store
from personae.web.pages import memory_page, run_page
from personae.web.render import page, script_json

SCRIPTS = ("vendor/cytoscape.min.js", "graph.js")


def static_text(name: str) -> str:
    return resources.files("personae.web").joinpath("static", name).read_text(encoding="utf-8")


def script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_policy(scripts: list[str]) -> str:
    """Only the inlined scripts run; nothing loads from anywhere, not even this file's folder."""
    hashes = " ".join(script_hash(s) for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def run_html(store: Store, run_id: int) -> str:
    """One self-contained HTML page: the transcript by phase, marks, memory and its graph."""
    scripts = [static_text(name) for name in SCRIPTS]
    for name, script in zip(SCRIPTS, scripts):
        if "</script" in script.lower():  # would end the inline element early
            raise ValueError(f"{name} cannot be inlined: it contains '</script'")
    memory = memory_page(store, run_id)
    export: dict[str, Any] = {
        "csp": content_policy(scripts),
        "css": Markup(static_text("app.css")),
        "scripts": [Markup(s) for s in scripts],
        "memory": memory,
        "graph_json": script_json(memory["graph"]),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return page("run.html", page=run_page(store, run_id), export=export)
