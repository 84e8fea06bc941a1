"""The ``personae`` command: parse arguments, call the library, render with rich.

Errors a user can act on (``PersonaeError``) become one paragraph and an exit code here, and only
here: 1 runtime failure, 2 bad input or usage, 130 interrupted. ``PERSONAE_DEBUG=1`` re-raises
them with their traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from personae.errors import PersonaeError, UserError
from personae.limits import INT64_MAX, MAX_TURNS, SEED_MAX
from personae.terminal import inert

app = typer.Typer(
    help="Personae: YAML-defined personas deliberating on one local model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji=False: ":name:" in a reply or a name stays text (see personae/terminal.py).
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def shown(value: object) -> str:
    """Any text that is not our own, for a rich console: inert and with its markup escaped."""
    return inert(value, markup=True)


def write(text: str) -> None:
    """Documents we print whole (show, graph, replay --format json) go out inert too."""
    sys.stdout.write(inert(text))

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database file or SQLAlchemy URL (default: $PERSONAE_DB, else ./personae.db)."),
]


# Numbers from the command line are bounded here, at the edge: beyond 64 bits SQLite (and beyond
# 32 llama.cpp) would fail with an OverflowError deep inside.
RunArgument = Annotated[int, typer.Argument(metavar="RUN", max=INT64_MAX)]

RetriesOption = Annotated[
    int | None,
    typer.Option(
        "--retries", min=1, max=1000,
        help="Tries per model call when the server fails transiently (env PERSONAE_RETRIES, "
        "default 5).",
    ),
]
RetryDelayOption = Annotated[
    float | None,
    typer.Option(
        "--retry-delay", min=0, max=3600,
        help="First backoff in seconds, doubling up to PERSONAE_RETRY_MAX_DELAY, default 30 "
        "(env PERSONAE_RETRY_DELAY, default 1).",
    ),
]


class Layout(str, Enum):
    transcript = "transcript"
    named = "named"
    cache_friendly = "cache_friendly"
    classic = "classic"


class BackendName(str, Enum):
    auto = "auto"
    ollama = "ollama"
    embedded = "embedded"
    openai = "openai"


class ShowFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


class SchemaKind(str, Enum):
    persona = "persona"
    scenario = "scenario"


def user_errors(command: F) -> F:
    """Our own errors become a message and an exit code; bugs keep their traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PersonaeError as exc:
            if os.environ.get("PERSONAE_DEBUG"):
                raise
            err.print(f"[bold red]Error:[/] {shown(str(exc))}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]Interrupted.[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    model: Annotated[
        str | None, typer.Option(help="Ollama model name, a .gguf path, or the openai server's model.")
    ] = None,
    backend: Annotated[BackendName, typer.Option(help="Model server.")] = BackendName.auto,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible server for --backend openai [env OPENAI_BASE_URL]."),
    ] = None,
    db: DbOption = None,
    max_turns: Annotated[
        int | None, typer.Option(min=1, max=MAX_TURNS, help="Override termination.max_turns.")
    ] = None,
    layout: Annotated[Layout | None, typer.Option(help="Prompt layout (default: the scenario's).")] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=SEED_MAX, help="Sampling seed, for repeatable runs.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary, no live turns.")] = False,
    retries: RetriesOption = None,
    retry_delay: RetryDelayOption = None,
    interactive: Annotated[
        bool,
        typer.Option("--interactive", "-i", help="Take part as User: type a message between turns (empty line to pass)."),
    ] = False,
) -> None:
    """Run a scenario, streaming each turn to the terminal."""
    from personae.config import load_scenario
    from personae.llm.select import check_model_flag, open_backend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.store.repo import Store

    loaded = load_scenario(scenario)
    check_model_flag(backend.value, model)
    chosen_model = model or loaded.scenario.model
    llm = _with_retries(
        open_backend(
            backend.value, chosen_model, num_ctx=loaded.scenario.memory.num_ctx, base_url=base_url
        ),
        retries,
        retry_delay,
    )
    store = Store.open(db)
    settings = settings_for(
        loaded, llm, layout=layout.value if layout else None, max_turns=max_turns, seed=seed
    )
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    if store.notice:
        out.print(shown(store.notice))
    run_id = start_run(store, loaded, llm, settings)
    out.print(
        f"run {run_id} · scenario {shown(loaded.scenario.name)} · layout {settings.layout} · "
        f"window {settings.num_ctx} tokens · up to {settings.max_turns} turns"
    )
    from personae.orchestrator.plan import shortfall

    short = shortfall(loaded.scenario.policy, settings.max_turns)
    if short is not None:
        err.print(f"[yellow]Note:[/] {shown(short.message())}")
    orchestrator = Orchestrator(
        loaded, llm, store, settings, ask_user=_ask_user if interactive else None
    )
    _drive(orchestrator, store, run_id, quiet=quiet, db=db)


def _ask_user(state: Any) -> str | None:
    """--interactive: one line from stdin between turns; an empty line (or end of input) passes."""
    out.print(f"[bold]User[/] (turn {state.turn + 1}, empty line to pass)> ", end="")
    line = sys.stdin.readline()
    if not line:
        out.print()
    return line.strip() or None


def _drive(orchestrator: Any, store: Any, run_id: int, *, quiet: bool, db: str | None) -> None:
    from personae.orchestrator.state import (
        Collapsed,
        InputGiven,
        Retrying,
        Stopped,
        TurnDone,
        TurnStarted,
    )

    interrupts = _Interrupts.install()
    stream = None if quiet else interrupts.guard(lambda piece: out.print(shown(piece), end=""))
    db_flag = _db_flag(db)
    resume = f"personae resume {run_id}{db_flag}"
    events = orchestrator.run(run_id, on_token=stream)
    try:
        for event in events:
            if interrupts.pending and not isinstance(event, Stopped):
                events.throw(KeyboardInterrupt)  # the run loop marks the run interrupted
            if isinstance(event, TurnStarted) and not quiet:
                phase = f" · {event.phase}" if event.phase else ""
                out.rule(f"[bold]{event.turn}. {shown(event.persona)}[/]{shown(phase)}", align="left")
            elif isinstance(event, Retrying) and not quiet:
                why = ", ".join(p.replace("_", " ") for p in event.problems)
                copied = f", {event.copied:.0%} said before" if "copy" in event.problems else ""
                out.print(f"\n[yellow]↻ asking again ({why}{copied}): attempt {event.attempt + 1}[/]")
            elif isinstance(event, TurnDone) and not quiet:
                u = event.usage
                if event.attempts > 1 and event.kept != event.attempts - 1:
                    out.print(f"\n[yellow]kept attempt {event.kept + 1}:[/]\n{shown(event.utterance.content)}")
                cut = " · [yellow]cut at num_predict[/]" if event.truncated else ""
                out.print(
                    f"\n[dim]{u.prompt_tokens} prompt tokens ({u.evaluated_tokens} evaluated), "
                    f"{u.completion_tokens} generated, {event.seconds:.1f} s[/]{cut}"
                )
                route = (event.utterance.meta or {}).get("route") or {}
                if route.get("by") == "selector":
                    how = "fallback to default" if route.get("fallback") else "chosen by the model"
                    out.print(f"[dim]{how}: {shown(route.get('reason') or route.get('problem') or '')}[/]")
            elif isinstance(event, Collapsed) and not quiet:
                out.print(_collapsed_line(event))
            elif isinstance(event, InputGiven) and not quiet:
                said = event.utterance
                out.rule(f"[bold]{said.turn}. User[/]", align="left")
                out.print(shown(said.content))
            elif isinstance(event, Stopped):
                out.print(f"\nstopped: {shown(event.reason)}")
    except KeyboardInterrupt:
        err.print(
            f"[yellow]Interrupted.[/] Run {run_id} is saved up to its last complete turn. "
            f"Continue it with: {shown(resume)}"
        )
        raise typer.Exit(130) from None
    except PersonaeError as exc:
        if os.environ.get("PERSONAE_DEBUG"):
            raise
        err.print(f"[bold red]Error:[/] {shown(str(exc))}")
        err.print(
            f"Run {run_id} is saved up to its last complete turn; once the cause is fixed, "
            f"continue it with: {shown(resume)}"
        )
        raise typer.Exit(exc.exit_code) from None
    finally:
        _summary(store, run_id, db_flag)


def _db_flag(db: str | None) -> str:
    """The commands printed for the user name the same file, quoted for a shell to paste."""
    return f" --db {shlex.quote(db)}" if db else ""


def _collapsed_line(event: Any) -> str:
    """One line per collapse: the span, the next prompt before → after, what memory holds."""
    kept = ", ".join(f"{n} {name}" for name, n in event.kept.items() if n)
    levels = [f"level {k[5:]}" for k in event.new if k.startswith("level")]
    up = f" · merged up to {levels[-1]}" if levels else ""
    how = "" if event.mode == "model" else f" · {event.mode}"
    return (
        f"[cyan]⟲ collapsed turns {event.first}-{event.last} ({event.reason}): next prompt "
        f"{event.tokens_before} → {event.tokens_after} tokens · memory holds {kept or 'nothing'}"
        f"{up}{how} · {event.seconds:.1f} s[/]"
    )


class _Interrupts:
    """Ctrl-C and SIGTERM (a service manager, `kill`) end a run as interrupted and resumable.

    The signal raises KeyboardInterrupt as usual and is also remembered: llama.cpp calls back into
    Python (its log callback) and ctypes swallows an exception raised there, so a remembered
    signal is raised again at the next streamed token or run event."""

    def __init__(self) -> None:
        self.pending = False

    @classmethod
    def install(cls) -> _Interrupts:
        import signal

        latch = cls()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(signum, latch._handle)
            except ValueError:  # not the main thread (the CLI called from a test runner's thread)
                pass
        return latch

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.pending = True
        raise KeyboardInterrupt

    def guard(self, stream: Callable[[str], None]) -> Callable[[str], None]:
        def guarded(piece: str) -> None:
            if self.pending:
                raise KeyboardInterrupt
            stream(piece)

        return guarded


def _with_retries(llm: Any, retries: int | None, retry_delay: float | None) -> Any:
    """Wrap a backend so transient server faults are retried, saying so on stderr."""
    from personae.llm.retry import RetryingBackend, RetryPolicy

    policy = RetryPolicy.from_env(attempts=retries, base_delay=retry_delay)

    def tell(attempt: int, seconds: float, error: Any) -> None:
        if error is None:
            err.print("[yellow]The model's reply was empty; asking once more.[/]")
        else:
            err.print(
                f"[yellow]{shown(str(error))} Retrying in {seconds:.1f} s "
                f"(attempt {attempt + 1} of {policy.attempts}).[/]"
            )

    return RetryingBackend(llm, policy, on_retry=tell)


def _summary(store: Any, run_id: int, db_flag: str) -> None:
    run = store.run(run_id)
    messages = store.messages(run_id)
    table = Table(title=f"Run {run_id}: {shown(run.scenario_name)} — {shown(run.status)}")
    for column in ("persona", "turns", "words"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    counts = Counter(m.persona for m in messages)
    for persona, n in counts.items():
        words = sum(len(m.content.split()) for m in messages if m.persona == persona)
        table.add_row(shown(persona), str(n), str(words))
    out.print(table)
    out.print(
        f"{run.turns} turns · {run.prompt_tokens} prompt tokens, {run.evaluated_tokens} evaluated, "
        f"{run.completion_tokens} generated · transcript: {shown(f'personae show {run_id}{db_flag}')}"
    )


@app.command()
@user_errors
def resume(
    run_id: RunArgument,
    db: DbOption = None,
    backend: Annotated[
        BackendName | None, typer.Option(help="Model server (default: the run's own).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the run's own).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server for --backend openai.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the run's process seems alive.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary, no live turns.")] = False,
    retries: RetriesOption = None,
    retry_delay: RetryDelayOption = None,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Take part as User between turns.")
    ] = False,
) -> None:
    """Continue an interrupted, failed or crashed run from its last committed turn."""
    from personae.errors import UserError
    from personae.llm.select import check_model_flag, open_backend
    from personae.orchestrator.resume import (
        backend_for_run,
        check_resumable,
        reload_scenario,
        run_settings,
    )
    from personae.orchestrator.run import Orchestrator
    from personae.store.repo import Store

    store = Store.open(db)
    if store.notice:
        out.print(shown(store.notice))
    row = store.run(run_id)
    note = check_resumable(row, force=force)
    kind, chosen = backend_for_run(row, backend.value if backend else None, model)
    check_model_flag(kind, model)
    loaded = reload_scenario(store, row)
    llm = _with_retries(open_backend(kind, chosen, num_ctx=row.num_ctx, base_url=base_url), retries, retry_delay)
    settings = run_settings(row, loaded, llm)
    if not store.claim_run(run_id, expected_status=row.status, expected_pid=row.pid):
        raise UserError(f"Run {run_id} changed while resuming it (another `personae resume`?).")
    if note:
        err.print(f"[yellow]{shown(note)}[/]")
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    out.print(
        f"resuming run {run_id} · scenario {shown(loaded.scenario.name)} after turn {row.turns} · "
        f"up to {settings.max_turns} turns"
    )
    orchestrator = Orchestrator(
        loaded, llm, store, settings, ask_user=_ask_user if interactive else None
    )
    _drive(orchestrator, store, run_id, quiet=quiet, db=db)


@app.command()
@user_errors
def replay(
    run_id: RunArgument,
    db: DbOption = None,
    fork_at: Annotated[
        int | None,
        typer.Option("--fork-at", min=0, max=INT64_MAX, help="Copy turns 1..N into a new run and continue it live."),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(help="Replay against this scenario file (and persona files) as they are now."),
    ] = None,
    all_differences: Annotated[
        bool, typer.Option("--all", help="Go on after the first difference and list every one.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One line per model call.")] = False,
    format: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.table,
    backend: Annotated[
        BackendName | None, typer.Option(help="Fork: model server (default: the run's own).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Fork: model (default: the run's own).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Fork: server for --backend openai.")] = None,
    max_turns: Annotated[
        int | None, typer.Option(min=1, max=MAX_TURNS, help="Fork: new turn limit.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Fork: only the summary.")] = False,
    retries: RetriesOption = None,
    retry_delay: RetryDelayOption = None,
) -> None:
    """Re-run a stored run against its recorded replies (no model) and check that every prompt
    is built exactly as before; exit 1 at the first difference. With --fork-at N, start a new
    run from its first N turns instead."""
    from personae.store.repo import Store

    store = Store.open(db)
    if fork_at is None:
        from personae.orchestrator.replay import replay_run
        from personae.render import replay_json, replay_text

        report = replay_run(store, run_id, scenario_file=scenario, keep_going=all_differences)
        store.close()
        if format is ListFormat.json:
            write(replay_json(report) + "\n")
        else:
            out.print(shown(replay_text(report, verbose=verbose)))
        if not report.identical:
            raise typer.Exit(1)
        return

    from personae.llm.select import check_model_flag, open_backend
    from personae.orchestrator.replay import fork_run
    from personae.orchestrator.resume import backend_for_run

    parent = store.run(run_id)
    kind, chosen = backend_for_run(parent, backend.value if backend else None, model)
    check_model_flag(kind, model)
    llm = _with_retries(
        open_backend(kind, chosen, num_ctx=parent.num_ctx, base_url=base_url), retries, retry_delay
    )
    fork = fork_run(store, run_id, fork_at, llm, max_turns=max_turns)
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    out.print(
        f"run {fork.run_id} ← run {run_id}@{fork_at}: turns 1–{fork_at} are copied from run "
        f"{run_id} (no model call), then it goes on live up to {fork.orchestrator.settings.max_turns} turns"
    )
    _drive(fork.orchestrator, store, fork.run_id, quiet=quiet, db=db)
    if fork.replay.divergences:
        first = fork.replay.divergences[0]
        err.print(
            f"[yellow]Note:[/] the copied turns were answered with run {run_id}'s replies, but "
            f"the prompts now differ from {shown(first.describe())} "
            f"(see `{shown(f'personae replay {run_id}{_db_flag(db)}')}`)."
        )


@app.command()
@user_errors
def runs(
    db: DbOption = None,
    format: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.table,
    limit: Annotated[
        int | None, typer.Option(min=1, max=INT64_MAX, help="Show only the newest N runs.")
    ] = None,
) -> None:
    """List runs: id, scenario, model, turns, tokens, status and why each stopped."""
    from personae.render import run_dict
    from personae.store.repo import Store

    with Store.open(db) as store:
        rows = store.runs(limit)
    if format is ListFormat.json:
        write(json.dumps([run_dict(r) for r in rows], ensure_ascii=False, indent=2) + "\n")
        return
    table = Table()
    for column in ("id", "scenario", "model", "backend", "turns", "tokens (prompt/eval/gen)", "status", "stopped by", "started"):
        table.add_column(column)
    from personae.liveness import process_alive

    for r in rows:
        lineage = f" ← {r.parent_run_id}@{r.fork_turn}" if r.parent_run_id else ""
        status = r.status
        if status == "running" and not process_alive(r.pid, r.heartbeat_at or r.started_at):
            status = "stale (resumable)"  # its process died without a word: kill -9, power loss
        table.add_row(
            f"{r.id}{lineage}", shown(r.scenario_name), shown(r.model), shown(r.backend), str(r.turns),
            f"{r.prompt_tokens}/{r.evaluated_tokens}/{r.completion_tokens}", shown(status),
            shown(r.stop_reason or ""), r.started_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command()
@user_errors
def show(
    run_id: RunArgument,
    db: DbOption = None,
    thoughts: Annotated[bool, typer.Option("--thoughts", help="Include hidden thinking.")] = False,
    format: Annotated[ShowFormat, typer.Option("--format", "-f")] = ShowFormat.text,
    memory: Annotated[
        bool,
        typer.Option("--memory", help="The run's memory instead: summaries by level, facts, "
                     "decisions, open questions, with their source turns."),
    ] = False,
) -> None:
    """Print the transcript of a run (or, with --memory, what its collapses kept)."""
    from personae.render import run_json, run_markdown, run_text
    from personae.store.repo import Store

    with Store.open(db) as store:
        run_row = store.run(run_id)
        messages = [] if memory else store.messages(run_id)
        nodes = store.memory_nodes(run_id) if memory else []
        edges = store.memory_edges(run_id) if memory else []
    if memory:
        from personae.memory.render import memory_json, memory_text

        render = memory_json if format is ShowFormat.json else memory_text
        write(render(run_row, nodes, edges) + "\n")
    elif format is ShowFormat.json:
        write(run_json(run_row, messages) + "\n")
    elif format is ShowFormat.md:
        write(run_markdown(run_row, messages, thoughts=thoughts) + "\n")
    else:
        write(run_text(run_row, messages, thoughts=thoughts) + "\n")


@app.command()
@user_errors
def search(
    query: Annotated[str, typer.Argument(help="Words to find in every transcript.")],
    db: DbOption = None,
    run_id: Annotated[int | None, typer.Option("--run", max=INT64_MAX, help="Only this run.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=INT64_MAX)] = 20,
) -> None:
    """Full-text search over transcripts, memory (summaries, facts, decisions, questions) and
    imported documents (SQLite FTS5, best first)."""
    from personae.store.repo import Store

    with Store.open(db) as store:
        hits = store.search(query, run_id=run_id, limit=limit)
        found = store.search_memory(query, run_id=run_id, limit=limit)
    if not hits and not found:
        out.print(f"Nothing matches {shown(repr(query))} in messages, memory or documents.")
        raise typer.Exit(1)
    for hit in hits:
        out.print(f"run {hit.run_id} · turn {hit.turn} · {shown(hit.persona)}: {shown(hit.snippet)}")
    for item in found:
        where = f" · turn {item.turn}" if item.turn else ""
        out.print(
            f"run {item.run_id} · {shown(item.kind)} \\[{item.node_id}]{where}: {shown(item.snippet)}"
        )


class GraphFormat(str, Enum):
    json = "json"
    graphml = "graphml"
    mermaid = "mermaid"
    dot = "dot"


@app.command()
@user_errors
def graph(
    run_id: RunArgument,
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

    with Store.open(db) as store:
        text = export(load_graph(store, run_id), format.value)
    if output is None:
        write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {output}: {exc.strerror or exc}. Choose another -o path.")
    out.print(f"wrote {shown(output)} ({format.value})")


@app.command()
@user_errors
def score(
    run_id: RunArgument,
    db: DbOption = None,
    format: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.table,
) -> None:
    """Score a run's replies: good, or empty / copy / off topic / other voice; cut at
    num_predict; whether each persona kept its checkable contract (benchmarks/quality.py's
    scorer, on one run)."""
    from personae.quality import summarize
    from personae.quality.runs import score_run
    from personae.store.repo import Store

    with Store.open(db) as store:
        store.run(run_id)  # a clear error for a run that does not exist
        scores = score_run(store, run_id)
    summary = summarize(scores)
    if format is ListFormat.json:
        rows = [
            {
                "turn": s.reply.turn, "persona": s.reply.persona, "good": s.good,
                "failures": s.failures, "copied": round(s.copied, 3),
                "shared_content_words": s.shared_content, "cut": s.cut, "contract": s.contract,
            }
            for s in scores
        ]
        totals = {
            "replies": summary.replies, "good": summary.good, "good_ratio": summary.good_ratio,
            "counts": summary.counts, "contract_rate": summary.contract_rate,
        }
        payload = {"run": run_id, "replies": rows, "summary": totals}
        write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table()
    for column in ("turn", "persona", "verdict", "copied", "topic words", "cut", "contract"):
        table.add_column(column)
    for s in scores:
        verdict = "good" if s.good else ", ".join(s.failures)
        contract = "" if s.contract is None else ("kept" if s.contract else "missed")
        table.add_row(
            str(s.reply.turn), shown(s.reply.persona), verdict, f"{s.copied:.0%}",
            str(s.shared_content), "cut" if s.cut else "", contract,
        )
    out.print(table)
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary.counts.items())
    rate = summary.contract_rate
    kept = f" · contracts kept {summary.contracts_kept}/{summary.contracts}" if rate is not None else ""
    out.print(f"{summary.good}/{summary.replies} good ({summary.good_ratio:.0%}) · {counts}{kept}")


@app.command()
@user_errors
def validate(files: Annotated[list[Path], typer.Argument(help="Persona or scenario files.")]) -> None:
    """Check persona and scenario files; exit 2 if any is invalid."""
    from personae.config import validate_file
    from personae.errors import ConfigError

    failed = 0
    for path in files:
        try:
            out.print(f"[green]ok[/] {shown(str(path))}: {shown(validate_file(path))}")
        except ConfigError as exc:
            failed += 1
            err.print(f"[bold red]Error:[/] {shown(str(exc))}")
    if failed:
        raise typer.Exit(2)


@app.command()
@user_errors
def personas(
    folder: Annotated[Path, typer.Option(help="Also list personas from this folder.")] = Path("personas"),
) -> None:
    """List the built-in personas and those in ./personas."""
    from personae.config import builtin_dir, builtin_personas, load_persona_file

    table = Table()
    for column in ("name", "description", "from"):
        table.add_column(column)
    for persona in builtin_personas().values():
        table.add_row(shown(persona.name), shown(persona.description), "built-in")
    if folder.is_dir() and folder.resolve() != (builtin_dir() / "personas").resolve():
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            persona = load_persona_file(path, folder=folder)
            table.add_row(shown(persona.name), shown(persona.description), shown(str(path)))
    out.print(table)


@app.command()
@user_errors
def schema(kind: Annotated[SchemaKind, typer.Argument()]) -> None:
    """Print the JSON Schema of persona or scenario files, for editor autocompletion."""
    from personae.config import json_schema

    sys.stdout.write(json.dumps(json_schema(kind.value), indent=2) + "\n")


@app.command()
@user_errors
def init(folder: Annotated[Path, typer.Argument()] = Path(".")) -> None:
    """Copy the example personas/ and scenarios/ into FOLDER (never overwriting a file)."""
    from personae.config import builtin_dir

    source = builtin_dir()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder. Pass a folder to write the examples into.")
    for sub in ("personas", "scenarios"):
        for path in sorted((source / sub).rglob("*")):
            if not path.is_file() or path.suffix not in {".yaml", ".yml", ".md", ".txt"}:
                continue
            target = folder / sub / path.relative_to(source / sub)
            if target.exists():
                out.print(f"kept {shown(target)} (already exists)")
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            except OSError as exc:  # a file where a folder goes, no permission, disk full
                raise UserError(
                    f"Cannot write {target}: {exc.strerror or exc}. Choose another folder, or "
                    "move what is in the way."
                ) from None
            out.print(f"wrote {shown(target)}")
    example = shlex.quote(str(folder / "scenarios" / "cache-review.yaml"))
    out.print(f"Next: personae run {shown(example)}")


@app.command()
@user_errors
def doctor(
    model: Annotated[str | None, typer.Option(help="Ollama model to look for.")] = None,
    db: DbOption = None,
) -> None:
    """Check what Personae needs: a model server, the model, the database."""
    from personae.doctor import run_checks

    usable = True
    for check in run_checks(model=model, db=db):
        mark = "[green]ok[/]" if check.ok else ("[yellow]--[/]" if check.optional else "[red]!![/]")
        out.print(f"{mark} {shown(check.name)}: {shown(check.detail)}")
        if not check.ok and check.fix:
            out.print(f"   fix: {shown(check.fix)}")
        usable = usable and (check.ok or check.optional)
    if not usable:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
