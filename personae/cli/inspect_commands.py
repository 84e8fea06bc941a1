"""The commands that read stored runs: ``runs``, ``show``, ``search``, ``export``, ``graph`` and
``score``. They open the database read-only, ask the store (or the memory graph, or the scorer)
for rows, and print them as a table for a person or as json, csv or tsv for a program.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from personae.cli.options import (
    DbOption,
    FormatOption,
    RunArg,
    RunArgument,
    RunOption,
    run_id_for,
)
from personae.cli.output import db_flag, err, out, output_format, shown, user_errors, write, write_out
from personae.cli.tabular import Format
from personae.cli.tabular import render as render_rows
from personae.cli.terminal import inert
from personae.cli.views import runs_table, search_line, transcript
from personae.errors import UserError
from personae.limits import INT64_MAX


class ShowFormat(str, Enum):
    text = "text"
    table = "table"  # the same as text: the terminal's own rendering, as for the other commands
    md = "md"
    json = "json"
    csv = "csv"
    tsv = "tsv"


class ExportFormat(str, Enum):
    json = "json"
    md = "md"
    html = "html"


class GraphFormat(str, Enum):
    json = "json"
    graphml = "graphml"
    mermaid = "mermaid"
    dot = "dot"


RUN_COLUMNS = (
    "id", "scenario", "model", "backend", "turns", "messages", "prompt_tokens", "evaluated_tokens",
    "completion_tokens", "status", "stop_reason", "error", "started", "parent_run_id", "fork_turn",
)


@user_errors
def runs(
    db: DbOption = None,
    format: FormatOption = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, max=INT64_MAX, help="Show only the newest N runs."),
    ] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Only runs of this scenario (its name).")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs with this status: completed, failed, interrupted, running, stale."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only runs on this model (a name, or a .gguf file name).")] = None,
) -> None:
    """List runs: id, scenario, model, turns, tokens, status and why each stopped."""
    from personae.config.names import HUMAN
    from personae.liveness import process_alive
    from personae.run_format import run_dict
    from personae.store.quick import run_listing

    newest = None if (scenario or status or model) else limit
    # A SQLite file at this version's schema is read with sqlite3 (no SQLAlchemy import: the
    # start-up of `runs` is the interpreter's); anything else goes the store's way, as before.
    listed_rows = run_listing(db, newest, human=HUMAN)
    if listed_rows is not None:
        rows: list[Any] = list(listed_rows[0])
        turns = listed_rows[1]
    else:
        from personae.store.repo import Store

        with Store.open_readonly(db) as store:
            rows = list(store.runs(newest))
            turns = store.persona_turns([r.id for r in rows], human=HUMAN)

    def shown_status(r: Any) -> str:
        if r.status == "running" and not process_alive(r.pid, r.heartbeat_at or r.started_at):
            return "stale (resumable)"  # its process died without a word: kill -9, power loss
        return str(r.status)

    rows = [
        r for r in rows
        if (scenario is None or r.scenario_name == scenario)
        and (status is None or shown_status(r).split()[0] == status.strip().lower())
        and (model is None or model in (r.model, Path(r.model).name))
    ][:limit]
    fmt = output_format(format)
    if fmt is Format.json:
        write(json.dumps([run_dict(r, turns[r.id]) for r in rows], ensure_ascii=False, indent=2) + "\n")
        return
    listed = []
    for r in rows:
        listed.append({
            "id": r.id, "scenario": r.scenario_name, "model": r.model, "backend": r.backend,
            "turns": turns[r.id], "messages": r.turns, "prompt_tokens": r.prompt_tokens,
            "evaluated_tokens": r.evaluated_tokens, "completion_tokens": r.completion_tokens,
            "status": shown_status(r), "stop_reason": r.stop_reason, "error": r.error, "started": r.started_at,
            "parent_run_id": r.parent_run_id, "fork_turn": r.fork_turn,
        })
    if fmt is not Format.table:
        write(render_rows(listed, RUN_COLUMNS, fmt))
        return
    out.print(runs_table(listed, out.width))


@user_errors
def show(
    run_ref: RunArg = None,
    db: DbOption = None,
    last: Annotated[bool, typer.Option("--last", help="The newest run.")] = False,
    turn: Annotated[
        int | None,
        typer.Option("--message", "-m", "--turn", "-t", min=1,
                     help="Only message N (the numbers in the transcript and in search hits)."),
    ] = None,
    thoughts: Annotated[bool, typer.Option("--thoughts", help="Include hidden thinking.")] = False,
    format: Annotated[
        ShowFormat, typer.Option("--format", "-f", help="text (table: the same), md, json, or csv/tsv: one row per turn.")
    ] = ShowFormat.text,
    memory: Annotated[
        bool,
        typer.Option("--memory", help="The run's memory instead: summaries by level, facts, "
                     "decisions, open questions, with their source turns."),
    ] = False,
) -> None:
    """Print the transcript of a run (or, with --memory, what its collapses kept)."""
    from personae.run_format import MESSAGE_FIELDS, message_dict, run_json, run_markdown, run_text
    from personae.store.repo import Store

    if memory and format not in (ShowFormat.text, ShowFormat.table, ShowFormat.json):
        raise UserError(
            f"show --memory prints text or json, not {format.value}: use --format text or --format json."
        )
    if memory and turn is not None:
        raise UserError("--message picks a message of the transcript; leave it out with --memory.")
    with Store.open_readonly(db) as store:
        run_id = run_id_for(store, run_ref, last=last)
        run_row = store.run(run_id)
        messages = [] if memory else store.messages(run_id)
        nodes = store.memory_nodes(run_id) if memory else []
        edges = store.memory_edges(run_id) if memory else []
    from personae.run_format import turns_of

    turns = turns_of(messages)
    if turn is not None:
        messages = [m for m in messages if m.turn == turn]
        if not messages:
            raise UserError(
                f"Run {run_id} has no message {turn} (it has messages 1 to {run_row.turns})."
                if run_row.turns else f"Run {run_id} has no messages yet."
            )
    if memory:
        from personae.memory.render import memory_json, memory_text

        render = memory_json if format is ShowFormat.json else memory_text
        write(render(run_row, nodes, edges) + "\n")
    elif format is ShowFormat.json:
        write(run_json(run_row, messages) + "\n")
    elif format is ShowFormat.md:
        write(run_markdown(run_row, messages, thoughts=thoughts) + "\n")
    elif format in (ShowFormat.csv, ShowFormat.tsv):
        rows = [{"run_id": run_id, **message_dict(m)} for m in messages]
        write(render_rows(rows, ("run_id", *MESSAGE_FIELDS), Format(format.value)))
    elif out.is_terminal:
        out.print(transcript(run_row, messages, thoughts=thoughts, turns=turns))
    else:
        write(run_text(run_row, messages, thoughts=thoughts, turns=turns) + "\n")


SEARCH_COLUMNS = ("run_id", "where", "message", "persona", "kind", "node_id", "snippet", "also_in_runs")


@user_errors
def search(
    query: Annotated[
        str,
        typer.Argument(
            help="FTS5 query: words, \"a phrase\", a OR b, a NOT b, prefix*, NEAR(a b). Text that "
            "is not valid FTS5 syntax is searched as plain words."
        ),
    ],
    db: DbOption = None,
    run_ref: RunOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=INT64_MAX, help="At most N hits of each kind.")
    ] = 20,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="table (one line per hit), json, csv or tsv.")
    ] = Format.table,
) -> None:
    """Full-text search over transcripts, memory (summaries, facts, decisions, questions) and
    imported documents (SQLite FTS5, best first); the same text in several runs is one hit."""
    from personae.hits import group_hits
    from personae.store.repo import Store

    wide = min(limit * 20, 2000)  # room for repeats, which grouping folds into one hit
    with Store.open_readonly(db) as store:
        run_id = None if run_ref is None else run_id_for(store, run_ref)
        hits = group_hits(store.search(query, run_id=run_id, limit=wide), lambda h: (h.persona, h.text), limit)
        found = group_hits(store.search_memory(query, run_id=run_id, limit=wide), lambda h: (h.kind, h.text), limit)
    if not hits and not found:
        err.print(f"Nothing matches {inert(repr(query))} in messages, memory or documents.", markup=False)
        raise typer.Exit(1)
    rows = [
        {"run_id": g.first.run_id, "where": "message", "message": g.first.turn, "persona": g.first.persona,
         "kind": "message", "node_id": None, "snippet": g.first.snippet,
         "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
        for g in hits
    ] + [
        {"run_id": g.first.run_id, "where": "memory", "message": g.first.turn, "persona": None,
         "kind": g.first.kind, "node_id": g.first.node_id, "snippet": g.first.snippet,
         "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
        for g in found
    ]
    if format is not Format.table:
        write(render_rows(rows, SEARCH_COLUMNS, format))
        return
    for row in rows:
        out.print(search_line(row, styled=out.is_terminal))
    first = next((r for r in rows if r["message"]), None)
    if first is not None:
        hint = f"personae show {first['run_id']} --message {first['message']}{db_flag(db)}"
        out.print(f"[dim]Open a hit with: {shown(hint)}[/]")


@user_errors
def export(
    run_ref: RunArgument,
    format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="json: everything stored (run, personas, messages, "
                     "model calls, memory graph); md: the transcript as Markdown; html: one "
                     "self-contained page (transcript and memory graph) that opens offline."),
    ] = ExportFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    thoughts: Annotated[bool, typer.Option("--thoughts", help="md: include hidden thinking.")] = False,
    db: DbOption = None,
) -> None:
    """Export one run: all of it as JSON, its transcript as Markdown, or the viewer's page as
    one HTML file."""
    from personae.run_format import export_json, run_markdown
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        run_id = run_id_for(store, run_ref)
        run_row = store.run(run_id)
        messages = store.messages(run_id)
        if format is ExportFormat.json:
            text = export_json(
                run_row, store.run_personas(run_id), messages, store.calls(run_id),
                store.memory_nodes(run_id), store.memory_edges(run_id),
            )
        elif format is ExportFormat.html:
            from personae.web.export import run_html

            text = run_html(store, run_id)
        else:
            text = run_markdown(run_row, messages, thoughts=thoughts)
    write_out(text + "\n", output, format.value)


@user_errors
def graph(
    run_ref: RunArgument,
    format: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Export a run's memory graph: messages, personas, summaries, facts, decisions, questions
    and documents, with their typed edges (json | graphml | mermaid | dot)."""
    from personae.memory.graph import export, load_graph
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        text = export(load_graph(store, run_id_for(store, run_ref)), format.value)
    write_out(text, output, format.value)


SCORE_COLUMNS = (
    "turn", "persona", "good", "failures", "copied", "topic_words", "cut", "contract",
)


@user_errors
def score(
    run_ref: RunArg = None,
    db: DbOption = None,
    format: FormatOption = None,
) -> None:
    """Score a run's replies: good, or empty / copy / off topic / other voice; cut at
    num_predict; whether each persona kept its checkable contract (benchmarks/quality.py's
    scorer, on one run)."""
    from personae.quality import summarize
    from personae.quality.runs import score_run
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        run_id = run_id_for(store, run_ref)
        store.run(run_id)  # a clear error for a run that does not exist
        scores = score_run(store, run_id)
    summary = summarize(scores)
    rows = [
        {
            "turn": s.reply.turn, "persona": s.reply.persona, "good": s.good,
            "failures": ", ".join(s.failures), "copied": round(s.copied, 3),
            "topic_words": s.shared_content, "cut": s.cut,
            "contract": None if s.contract is None else ("kept" if s.contract else "missed"),
        }
        for s in scores
    ]
    fmt = output_format(format)
    if fmt is Format.json:
        totals = {
            "replies": summary.replies, "good": summary.good, "good_ratio": summary.good_ratio,
            "counts": summary.counts, "contract_rate": summary.contract_rate,
        }
        payload = {"run": run_id, "replies": rows, "summary": totals}
        write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    if fmt is not Format.table:
        write(render_rows(rows, SCORE_COLUMNS, fmt))
        return
    table = Table()
    for column in ("turn", "persona", "verdict", "copied", "topic words", "cut", "contract"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["turn"]), Text(inert(row["persona"])), "good" if row["good"] else str(row["failures"]),
            f"{row['copied']:.0%}", str(row["topic_words"]), "cut" if row["cut"] else "",
            str(row["contract"] or ""),
        )
    out.print(table)
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary.counts.items())
    rate = summary.contract_rate
    kept = f" · contracts kept {summary.contracts_kept}/{summary.contracts}" if rate is not None else ""
    out.print(f"{summary.good}/{summary.replies} good ({summary.good_ratio:.0%}) · {counts}{kept}")
