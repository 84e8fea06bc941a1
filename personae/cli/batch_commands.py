"""``personae batch SWEEP.yaml``, ``batch resume``, ``batch report``, ``batch list`` (and the
top-level ``batches``): sweeps over the library in ``personae/batch``.

The library runs the variants on worker threads and yields events; this module opens the model
servers the sweep's endpoints name and draws one progress bar from the events. The library and
rich.progress are imported inside the commands that use them, so that registering these commands
costs `personae --help` (and every other command's start-up) nothing.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from personae.cli.live import Interrupts
from personae.cli.options import DbOption, FormatOption
from personae.cli.output import db_flag, err, out, output_format, shown, user_errors, write
from personae.cli.tabular import Format
from personae.cli.tabular import render as render_rows
from personae.limits import INT64_MAX

if TYPE_CHECKING:
    from personae.batch.runner import BatchEvent
    from personae.batch.start import Plan
    from personae.batch.sweep import Endpoint
    from personae.llm.base import Backend
    from personae.store.repo import Store

BatchArgument = Annotated[int, typer.Argument(metavar="BATCH", min=1, max=INT64_MAX, help="Batch id (personae batches).")]


class DefaultRun(TyperGroup):
    """``personae batch SWEEP.yaml`` is ``personae batch run SWEEP.yaml``: a first argument that
    is no subcommand's name is a sweep file."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@user_errors
def run(
    sweep: Annotated[Path, typer.Argument(metavar="SWEEP", help="Sweep YAML file (see sweeps/).")],
    db: DbOption = None,
) -> None:
    """Run every variant of a sweep, several at once, with one progress bar."""
    Interrupts.install()
    from personae.batch.start import plan_new
    from personae.batch.sweep import expand, load_sweep
    from personae.store.repo import Store

    loaded = load_sweep(sweep)
    count = len(expand(loaded))
    store = Store.open(db)
    plan = plan_new(store, loaded)
    out.print(
        f"batch {plan.batch_id} · sweep {shown(loaded.sweep.name)} · {count} variants · "
        f"db: {shown(store.path)}"
    )
    _go(store, db, plan)


@user_errors
def resume(batch_id: BatchArgument, db: DbOption = None) -> None:
    """Continue a batch after a kill or Ctrl-C: finished runs are kept, interrupted ones continue
    from their last turn, the rest start."""
    Interrupts.install()
    from personae.batch.start import plan_resume
    from personae.store.repo import Store

    store = Store.open(db)
    plan = plan_resume(store, batch_id)
    started = sum(1 for item in plan.work if item.run_id is not None)
    out.print(
        f"resuming batch {batch_id} · {plan.done} runs done, {started} to continue, "
        f"{len(plan.work) - started} to start · db: {shown(store.path)}"
    )
    _go(store, db, plan)


@user_errors
def report(
    batch_id: BatchArgument,
    db: DbOption = None,
    format: FormatOption = None,
) -> None:
    """The variants of a batch side by side: quality, tokens, turns, time, stop reasons, and
    mean ± spread over seeds."""
    from personae.batch.report import GROUP_COLUMNS, RUN_COLUMNS, batch_report
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        result = batch_report(store, batch_id)
    fmt = output_format(format)
    if fmt is Format.json:
        write(json.dumps(result.as_json(), ensure_ascii=False, indent=2) + "\n")
        return
    if fmt is not Format.table:
        write(render_rows([vars(r) for r in result.runs], RUN_COLUMNS, fmt))
        return
    out.print(f"batch {batch_id} · {shown(result.name)} · {result.status}")
    out.print(_groups_table(result.groups, GROUP_COLUMNS))
    out.print(_runs_table([vars(r) for r in result.runs]))


@user_errors
def batches(db: DbOption = None, format: FormatOption = None) -> None:
    """List batches: id, sweep, status, and how many of its runs completed, failed or wait."""
    from personae.batch.rows import batches as all_batches
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        listed = all_batches(store)
    from personae.liveness import process_alive

    rows = [
        {"id": b.id, "name": b.name, "variants": b.variants,
         # left running by a process that is gone (kill -9): say it can be resumed
         "status": "stale (resumable)" if b.status == "running" and not process_alive(b.pid, b.started_at) else b.status,
         "completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
         "other": b.variants - counts.get("completed", 0) - counts.get("failed", 0),
         "started": b.started_at, "sweep": b.sweep_path}
        for b, counts in listed
    ]
    columns = ["id", "name", "status", "variants", "completed", "failed", "other", "started", "sweep"]
    fmt = output_format(format)
    if fmt is not Format.table:
        write(render_rows(rows, columns, fmt))
        return
    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(shown(_cell(row[c])) for c in columns))
    out.print(table)


def _go(store: Store, db: str | None, plan: Plan) -> None:
    """Run the plan under one progress bar; on Ctrl-C, say how to go on."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from personae.batch.runner import RunFinished, RunStarted, TurnFinished
    from personae.batch.start import execute

    totals = {"done": 0, "failed": 0, "turns": 0, "tokens": 0}
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[line]}"), TimeRemainingColumn(),
    )
    failures: list[str] = []
    try:
        with Progress(*columns, console=out) as progress:
            task = progress.add_task("runs", total=len(plan.work), line="")
            with closing(execute(store, db, plan, _opener())) as events:
                for event in events:
                    _count(event, totals, failures, RunStarted, TurnFinished, RunFinished)
                    progress.update(
                        task, completed=totals["done"] + totals["failed"],
                        line=f"{totals['done']} done · {totals['failed']} failed · "
                        f"{totals['turns']} turns · {totals['tokens']} tokens",
                    )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]Batch {plan.batch_id} interrupted; its runs stopped after their turn. Go on "
            f"with:[/] {shown(f'personae batch resume {plan.batch_id}{db_flag(db)}')}"
        )
        raise
    for line in failures:
        err.print(f"[red]failed:[/] {shown(line)}")
    out.print(
        f"batch {plan.batch_id}: {totals['done']} runs completed, {totals['failed']} failed · "
        f"report: {shown(f'personae batch report {plan.batch_id}{db_flag(db)}')}"
    )
    if totals["failed"]:
        raise typer.Exit(1)


def _count(event: BatchEvent, totals: dict[str, int], failures: list[str], *kinds: Any) -> None:
    _started, turn_kind, finished_kind = kinds
    if isinstance(event, turn_kind):
        totals["turns"] += 1
        totals["tokens"] += event.evaluated_tokens + event.completion_tokens
    elif isinstance(event, finished_kind):
        if event.status == "completed":
            totals["done"] += 1
        else:
            totals["failed"] += 1
            run = f"run {event.run_id}" if event.run_id is not None else "not started"
            failures.append(f"{event.key} ({run}): {event.reason}")


def _opener() -> Any:
    """How the CLI opens an endpoint's model server: as ``personae run`` does, quietly (the
    progress bar is the only live line), with retries told on stderr; the embedded engine with
    one parallel slot per run the endpoint takes at once (servers ignore ``slots``)."""
    from personae.cli.model_server import open_model_server
    def open_endpoint(endpoint: Endpoint, model: str | None, num_ctx: int | None) -> Backend:
        backend: Backend = open_model_server(
            endpoint.backend, model, num_ctx=num_ctx, base_url=endpoint.url,
            retries=None, retry_delay=None, quiet=True, slots=endpoint.concurrency,
        )
        return backend

    return open_endpoint


def _cell(value: Any) -> str:
    from personae.cli.tabular import plain

    value = plain(value)
    return "" if value is None else str(value)


def _number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _groups_table(groups: list[Any], _columns: list[str]) -> Table:
    table = Table(title="variants (mean ± sd over seeds, completed runs)", header_style="bold")
    for column in ("variant", "runs", "turns", "good", "evaluated tok", "sent tok", "wall s", "stop reasons"):
        table.add_column(column)
    for g in groups:
        table.add_row(
            shown(_short(g.group)), f"{g.completed}/{g.runs}",
            _pm(g.turns_mean, g.turns_sd), _pm(g.good_mean, g.good_sd, 2),
            _pm(g.evaluated_mean, g.evaluated_sd, 0), _pm(g.sent_mean, g.sent_sd, 0),
            _pm(g.wall_s_mean, g.wall_s_sd), shown(g.stop_reasons),
        )
    return table


def _pm(mean: float | None, sd: float | None, digits: int = 1) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _runs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="runs", header_style="bold")
    columns = ["variant", "run", "status", "stop_reason", "turns", "good", "evaluated_tokens", "sent_tokens", "wall_s"]
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*(shown(_short(row[c]) if c == "variant" else _number(row[c], 2)) for c in columns))
    return table


def _short(key: str) -> str:
    """A variant's key for a terminal: the scenario by its file name, not its path (json, csv
    and tsv keep the whole key)."""
    scenario, _, rest = key.partition("|")
    name = Path(scenario).stem if scenario.endswith((".yaml", ".yml")) else scenario
    return f"{name}|{rest}" if rest else name
