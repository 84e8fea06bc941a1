"""What the CLI draws in a terminal (rich renderables), apart from the plain text and files that
``run_format.py`` makes. Stored text (names, replies) goes in as ``rich.text.Text``, never as markup,
and through ``terminal.inert`` first: ``Text`` keeps ESC and the other controls as they are.

The runs table fits the terminal: below 130 columns it drops the columns a person reads least
(backend, the token counts), below 100 the model too, and folds a long scenario name rather than
cutting every value to "offic…". Whole values are for ``--format tsv|csv|json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePath
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from personae.cli.terminal import inert

# (column, the narrowest terminal that shows it)
_RUN_COLUMNS: tuple[tuple[str, int], ...] = (
    ("id", 0), ("scenario", 0), ("model", 100), ("backend", 130), ("turns", 0),
    ("tokens prompt/eval/gen", 130), ("status", 0), ("stopped by", 0), ("started", 0),
)


def short_model(model: str) -> str:
    """A GGUF path by its file name: the folder is in ``--format tsv`` and ``show``."""
    return PurePath(model).name if model.endswith(".gguf") else model


_MATCH = re.compile(r"\[([^\[\]\n]*)\]")  # FTS5's snippet() marks each match as [word]


def highlighted(snippet: str) -> Text:
    """A search snippet for a terminal: the matches FTS5 marked with brackets in bold, the
    brackets dropped; the rest inert."""
    text = Text()
    at = 0
    for match in _MATCH.finditer(snippet):
        text.append(inert(snippet[at : match.start()]))
        text.append(inert(match.group(1)), style="bold yellow")
        at = match.end()
    text.append(inert(snippet[at:]))
    return text


def one_line_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int) -> Table:
    """A listing for a terminal ``width`` columns wide, one line per item: the first column
    whole, the second (the prose) taking the room that is left, the others at most 32 wide; long
    values are cut with an ellipsis (``--format tsv`` has them whole)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style="bold", width=width)
    for index, name in enumerate(columns):
        table.add_column(
            name, no_wrap=True, overflow="ellipsis", ratio=1 if index == 1 else None,
            max_width=None if index < 2 else 32,
        )
    for r in rows:
        cells = []
        for name in columns:
            value = r.get(name)
            text = ("yes" if value else "") if isinstance(value, bool) else str(value or "")
            cells.append(Text(inert(text), style="dim" if r.get("hidden") else ""))
        table.add_row(*cells)
    return table


def stopped_by(row: Mapping[str, Any], limit: int = 70) -> str:
    """Why a run stopped, for a table cell: a failed run's own error (its first sentence), not
    just "error" — `personae show RUN` has the whole message."""
    error = str(row.get("error") or "").strip()
    if not error:
        return str(row.get("stop_reason") or "")
    first = error.split(". ")[0].rstrip(".")
    return "error: " + (first if len(first) <= limit else first[: limit - 1].rstrip() + "…")


def runs_table(rows: Sequence[Mapping[str, Any]], width: int) -> Table:
    """The runs as a table for a terminal ``width`` columns wide."""
    shown = [name for name, at_least in _RUN_COLUMNS if width >= at_least]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style="bold")
    for name in shown:
        fold = name in ("scenario", "model", "stopped by", "status")
        table.add_column(
            name,
            overflow="fold" if fold else "ellipsis",
            no_wrap=not fold,
            justify="right" if name == "turns" else "left",
            min_width=10 if fold else None,
        )
    for r in rows:
        lineage = f" ← {r['parent_run_id']}@{r['fork_turn']}" if r.get("parent_run_id") else ""
        started: datetime = r["started"]
        cells: dict[str, Text | str] = {
            "id": f"{r['id']}{lineage}",
            "scenario": Text(inert(r["scenario"])),
            "model": Text(inert(short_model(r["model"]))),
            "backend": Text(inert(r["backend"])),
            "turns": str(r["turns"]),
            "tokens prompt/eval/gen": (
                f"{r['prompt_tokens']}/{r['evaluated_tokens']}/{r['completion_tokens']}"
            ),
            "status": Text(inert(r["status"])),
            "stopped by": Text(inert(stopped_by(r))),
            "started": started.strftime("%Y-%m-%d %H:%M" if width >= 130 else "%m-%d %H:%M"),
        }
        table.add_row(*(cells[name] for name in shown))
    return table


# Distinct in both dark and light terminals; a persona keeps its colour for the whole transcript.
PERSONA_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


def persona_colours(names: Sequence[str]) -> dict[str, str]:
    """Each speaker a colour, in order of first appearance; User is always plain bold."""
    colours: dict[str, str] = {}
    for name in names:
        if name not in colours and name != "User":
            colours[name] = PERSONA_COLOURS[len(colours) % len(PERSONA_COLOURS)]
    colours["User"] = "bold"
    return colours


def transcript(run: Any, messages: Sequence[Any], *, thoughts: bool = False, turns: int | None = None) -> Text:
    """``show`` in a terminal: the text of ``run_format.run_text``, each speaker's label in its colour.
    Stored text is appended inert, as plain ``Text``: markup in a reply stays characters and
    control characters are shown, not obeyed."""
    from personae.run_format import given_line, marks, turns_of, turns_phrase

    colours = persona_colours([m.persona for m in messages])
    out = Text()
    out.append(f"Run {run.id} · ", style="bold")
    out.append(inert(run.scenario_name), style="bold")
    stop = f" ({run.stop_reason})" if run.stop_reason else ""
    out.append(inert(f" · {run.status}{stop} · "))
    out.append(inert(run.model))
    length = turns_phrase(turns_of(messages) if turns is None else turns, run.turns)
    out.append(inert(f" via {run.backend} · ") + length + "\n")
    given = given_line(run)
    if given:
        out.append(inert(given) + "\n", style="dim")
    for m in messages:
        out.append("\n")
        out.append(f"[{m.turn}] ", style="dim")
        out.append(inert(m.persona), style=f"bold {colours.get(m.persona, '')}".strip())
        if m.phase:
            out.append(inert(f" ({m.phase})"), style="dim")
        out.append(":\n")
        if thoughts and m.thinking:
            out.append("  (thinking) " + inert(m.thinking).replace("\n", "\n  ") + "\n", style="dim italic")
        out.append(inert(m.content or "(empty reply)") + "\n")
        noted = marks(m)
        if noted:
            out.append(inert(noted.lstrip("\n")) + "\n", style="yellow")
    if run.error:
        out.append(f"\nerror: {inert(run.error)}\n", style="red")
    return out


def search_line(row: Mapping[str, Any], *, styled: bool = True) -> Text:
    """One search hit: where it is (a `personae show RUN --message N` away), then the snippet
    with the matched words highlighted — or, where no style shows (a pipe), still in FTS5's
    [brackets] — and a passage found in other runs too says in how many."""
    line = Text()
    line.append(f"run {row['run_id']}", style="bold")
    if row["where"] == "message":
        line.append(f" · message {row['message']} · ")
        line.append(inert(row["persona"] or ""))
    else:
        line.append(inert(f" · {row['kind']} [{row['node_id']}]"))
        if row["message"]:
            line.append(f" · message {row['message']}")
    line.append(": ")
    line.append_text(highlighted(row["snippet"]) if styled else Text(inert(row["snippet"])))
    also = row["also_in_runs"]
    if also:
        runs = ", ".join(map(str, also[:8])) + (", …" if len(also) > 8 else "")
        line.append(f"  (also in {len(also)} other run{'s' if len(also) != 1 else ''}: {runs})", style="dim")
    return line
