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
from rich.text import Text

from personae.errors import PersonaeError, UserError
from personae.limits import INT64_MAX, MAX_TURNS, SEED_MAX
from personae.tabular import Format
from personae.tabular import render as render_rows
from personae.terminal import inert
from personae.views import runs_table
from personae.words import count

app = typer.Typer(
    help="Personae: YAML-defined personas deliberating on one local model.",
    no_args_is_help=True,
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
    """Documents we print whole (show, graph, export, replay --format json|csv|tsv, the
    listings' json|csv|tsv) go out inert too; files written with -o keep the text as stored."""
    sys.stdout.write(inert(text))


def _flags_without_type_labels() -> None:
    """Typer's help prints a type beside every parameter: `<bool>` even for a plain flag such as
    --quiet or --help, which takes no value, and `<list[Path]>` beside `FILE...`. The type column
    is left empty for flags and for arguments that name themselves with a metavar."""
    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich
    argument_type = TyperArgument.display_type_rich

    def for_option(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else option_type(self, ctx)

    def for_argument(self: TyperArgument, ctx: Any) -> str | None:
        return None if self.metavar else argument_type(self, ctx)

    TyperOption.display_type_rich = for_option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = for_argument  # type: ignore[method-assign]


_flags_without_type_labels()


def _version(value: bool) -> None:
    if value:
        from personae import __version__

        sys.stdout.write(f"personae {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Personae: YAML-defined personas deliberating on one local model.

    The database is --db, else $PERSONAE_DB, else ./personae.db. NO_COLOR=1 turns colour off."""

AllowDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--allow-dir", metavar="DIR",
        help="Also let documents come from this folder (repeatable). By default they must lie in "
        "the scenario's folder or the project folder the command runs from.",
    ),
]

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
    named = "named"
    transcript = "transcript"
    cache_friendly = "cache_friendly"
    classic = "classic"


class BackendName(str, Enum):
    auto = "auto"
    ollama = "ollama"
    embedded = "embedded"
    openai = "openai"


class ShowFormat(str, Enum):
    text = "text"
    table = "table"  # the same as text: the terminal's own rendering, as for the other commands
    md = "md"
    json = "json"
    csv = "csv"
    tsv = "tsv"


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


@app.command(rich_help_panel="Run")
@user_errors
def run(
    scenario: Annotated[
        Path, typer.Argument(metavar="SCENARIO", help="Scenario YAML file, or the name of one in ./scenarios or built in (personae scenarios).")
    ],
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
    allow_dir: AllowDirOption = None,
) -> None:
    """Run a scenario, streaming each turn to the terminal."""
    _Interrupts.install()  # from the start: a SIGTERM in the first second is an interrupt too
    from personae.config import load_scenario
    from personae.llm.backends import check_model_flag
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.store.repo import Store

    from personae.config.catalog import find_scenario

    loaded = load_scenario(find_scenario(scenario), allowed_dirs=allow_dir or ())
    check_model_flag(backend.value, model)
    chosen_model = model or loaded.scenario.model
    llm = _backend(
        backend.value, chosen_model, num_ctx=loaded.scenario.memory.num_ctx, base_url=base_url,
        retries=retries, retry_delay=retry_delay, quiet=quiet,
    )
    store = Store.open(db)
    settings = settings_for(
        loaded, llm, layout=layout.value if layout else None, max_turns=max_turns, seed=seed
    )
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    if store.notice:
        out.print(shown(store.notice))
    from personae.orchestrator.shortfall import shortfall

    short = shortfall(loaded.scenario.policy, settings.max_turns)
    if short is not None:
        err.print(f"[yellow]Note:[/] {shown(short.message())}")
    # Before the run row exists: a scenario that cannot fit the window leaves no run behind.
    orchestrator = Orchestrator(
        loaded, llm, store, settings, ask_user=_ask_user if interactive else None
    )
    try:
        run_id = start_run(store, loaded, llm, settings)
    except KeyboardInterrupt:
        _release_new_run(store)
        raise
    try:
        _drive(
            orchestrator, store, run_id, quiet=quiet, db=db,
            announce=f"run {run_id} · scenario {shown(loaded.scenario.name)} · layout {settings.layout} · "
            f"window {settings.num_ctx} tokens · up to {count(settings.max_turns, 'turn')}",
        )
    except KeyboardInterrupt:
        _release_new_run(store, run_id)
        raise


def _ask_user(state: Any) -> str | None:
    """--interactive: one line from stdin between turns; an empty line (or end of input) passes."""
    out.print(f"[bold]User[/] (turn {state.turn + 1}, empty line to pass)> ", end="")
    line = sys.stdin.readline()
    if not line:
        out.print()
    return line.strip() or None


def _release_new_run(store: Any, run_id: int | None = None) -> None:
    """Interrupted before the run loop could say so (while the run row was being made, or
    before the loop began): if this process holds the run (``run_id``, else the newest), it is
    ``interrupted`` (resumable), not ``running`` with nobody running it."""
    rows = [store.run(run_id)] if run_id is not None else store.runs(1)
    if rows and rows[0].status == "running" and rows[0].pid == os.getpid():
        store.finish_run(rows[0].id, "interrupted", stop_reason="interrupted")


def _drive(
    orchestrator: Any, store: Any, run_id: int, *, quiet: bool, db: str | None,
    announce: str | None = None,
) -> None:
    from personae.orchestrator.state import (
        Collapsed,
        InputGiven,
        Retrying,
        Stopped,
        TurnDone,
        TurnStarted,
    )

    interrupts = _Interrupts.install()
    line = _OpenLine()
    stream = None if quiet else interrupts.guard(line.writer(lambda piece: out.print(shown(piece), end="")))
    db_flag = _db_flag(db)
    resume = f"personae resume {run_id}{db_flag}"
    row = store.run(run_id)
    copied_upto = row.fork_turn if row.parent_run_id is not None else 0  # a fork's copied turns
    events = orchestrator.run(run_id, on_token=stream)
    try:
        if announce:
            out.print(announce)
        for event in events:
            if interrupts.pending and not isinstance(event, Stopped):
                events.throw(KeyboardInterrupt)  # the run loop marks the run interrupted
            if isinstance(event, TurnStarted) and not quiet:
                phase = f" · {event.phase}" if event.phase else ""
                copied = f" · copied from run {row.parent_run_id}" if event.turn <= (copied_upto or 0) else ""
                out.rule(f"[bold]{event.turn}. {shown(event.persona)}[/]{shown(phase)}{copied}", align="left")
            elif isinstance(event, Retrying) and not quiet:
                line.close()
                why = ", ".join(p.replace("_", " ") for p in event.problems)
                said = f", {event.copied:.0%} said before" if "copy" in event.problems else ""
                out.print(f"[yellow]↻ asking again ({why}{said}): attempt {event.attempt + 1}[/]")
            elif isinstance(event, TurnDone) and not quiet:
                line.close()
                said = event.utterance
                if event.attempts > 1 and event.kept != event.attempts - 1:
                    out.print(f"[yellow]kept attempt {event.kept + 1}:[/]\n{shown(said.content)}")
                elif said.structured is not None and said.turn > (copied_upto or 0):
                    # the stream showed the JSON; the others read it rendered
                    out.print(f"[dim]as the others read it:[/]\n{shown(said.content)}")
                out.print(_done_line(event, copied=event.utterance.turn <= (copied_upto or 0)))
                route = (event.utterance.meta or {}).get("route") or {}
                if route.get("by") == "selector":
                    how = "fallback to default" if route.get("fallback") else "chosen by the model"
                    out.print(f"[dim]{how}: {shown(route.get('reason') or route.get('problem') or '')}[/]")
            elif isinstance(event, Collapsed) and not quiet:
                out.print(_collapsed_line(event))
            elif isinstance(event, InputGiven) and not quiet:
                said = event.utterance
                copied = f" · copied from run {row.parent_run_id}" if said.turn <= (copied_upto or 0) else ""
                out.rule(f"[bold]{said.turn}. User[/]{copied}", align="left")
                out.print(shown(said.content))
            elif isinstance(event, Stopped):
                line.close()
                out.print(f"\nstopped: {shown(event.reason)}")
    except KeyboardInterrupt:
        line.close()  # "Interrupted." on a line of its own, not after half a reply
        now = store.run(run_id)  # interrupted before the run loop began: mark it here
        if now.status == "running" and now.pid == os.getpid():
            store.finish_run(run_id, "interrupted", stop_reason="interrupted")
        err.print(
            f"[yellow]Interrupted.[/] Run {run_id} is saved up to its last complete turn. "
            f"Continue it with: {shown(resume)}"
        )
        raise typer.Exit(130) from None
    except PersonaeError as exc:
        line.close()
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


class _OpenLine:
    """Whether streamed text left the cursor mid-line, so the next line starts on a new one."""

    def __init__(self) -> None:
        self.open = False

    def writer(self, write: Callable[[str], None]) -> Callable[[str], None]:
        def written(piece: str) -> None:
            write(piece)
            if piece:
                self.open = not piece.endswith("\n")

        return written

    def close(self) -> None:
        if self.open:
            out.print()
            self.open = False


def _done_line(event: Any, *, copied: bool) -> str:
    """Under a turn: its tokens, speed and seconds; a fork's copied turn says so instead."""
    if copied:
        return "[dim]copied (no model call)[/]"
    u = event.usage
    rate = f", {u.completion_tokens / (u.eval_ns / 1e9):.1f} tokens/s" if u.eval_ns > 0 else ""
    cut = " · [yellow]cut at num_predict[/]" if event.truncated else ""
    return (
        f"[dim]{u.prompt_tokens} prompt tokens ({u.evaluated_tokens} evaluated), "
        f"{u.completion_tokens} generated{rate}, {event.seconds:.1f} s[/]{cut}"
    )


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


def _backend(
    kind: str, model: str | None, *, num_ctx: int | None, base_url: str | None,
    retries: int | None, retry_delay: float | None, quiet: bool,
) -> Any:
    """The model server, retrying transient faults; in a terminal (and without --quiet) with a
    progress line while the model loads and while each call waits for its first token."""
    from personae.llm.backends import open_backend
    from personae.progress import Progress, ProgressBackend

    progress = Progress(out) if out.is_terminal and not quiet else None
    if progress is None:
        return _with_retries(open_backend(kind, model, num_ctx=num_ctx, base_url=base_url), retries, retry_delay)
    opening = {"ollama": "connecting to Ollama", "openai": "connecting to the server"}
    with progress.during(opening.get(kind, "loading the model")):
        llm = open_backend(kind, model, num_ctx=num_ctx, base_url=base_url)
    return ProgressBackend(_with_retries(llm, retries, retry_delay), progress)


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
    from personae.words import count

    run = store.run(run_id)
    messages = store.messages(run_id)
    table = Table(title=Text(f"Run {run_id}: {inert(run.scenario_name)} — {inert(run.status)}"))
    for column in ("persona", "turns", "words"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    counts = Counter(m.persona for m in messages)
    for persona, n in counts.items():
        words = sum(len(m.content.split()) for m in messages if m.persona == persona)
        table.add_row(Text(inert(persona)), str(n), str(words))
    out.print(table)
    said = counts.get("User", 0)  # input is not a turn: max_turns and policies count personas only
    user = f" (and {count(said, 'message')} from User)" if said else ""
    out.print(
        f"{count(len(messages) - said, 'turn')}{user} · {run.prompt_tokens} prompt tokens, "
        f"{run.evaluated_tokens} evaluated, {run.completion_tokens} generated · transcript: "
        f"{inert(f'personae show {run_id}{db_flag}')}",
        markup=False,
    )


@app.command(rich_help_panel="Run")
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
    scenario: Annotated[
        Path | None,
        typer.Option(help="Go on with this scenario file as it is now (e.g. a router rule fixed); "
                     "it replaces the run's stored scenario."),
    ] = None,
) -> None:
    """Continue an interrupted, failed or crashed run from its last committed turn."""
    _Interrupts.install()
    from personae.errors import UserError
    from personae.llm.backends import check_model_flag
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
    loaded = reload_scenario(store, row, scenario_file=scenario)
    llm = _backend(
        kind, chosen, num_ctx=row.num_ctx, base_url=base_url, retries=retries,
        retry_delay=retry_delay, quiet=quiet,
    )
    settings = run_settings(row, loaded, llm)
    orchestrator = Orchestrator(  # checks the window before the run is claimed
        loaded, llm, store, settings, ask_user=_ask_user if interactive else None
    )
    if note:
        err.print(f"[yellow]{shown(note)}[/]")
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    if not store.claim_run(run_id, expected_status=row.status, expected_pid=row.pid):
        raise UserError(f"Run {run_id} changed while resuming it (another `personae resume`?).")
    if scenario is not None:
        store.replace_scenario(run_id, loaded.source_yaml, str(scenario.expanduser().resolve()))
    try:
        _drive(
            orchestrator, store, run_id, quiet=quiet, db=db,
            announce=f"resuming run {run_id} · scenario {shown(loaded.scenario.name)} after turn "
            f"{row.turns} · up to {count(settings.max_turns, 'turn')}",
        )
    except KeyboardInterrupt:
        _release_new_run(store, run_id)
        raise


@app.command(rich_help_panel="Run")
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
    format: Annotated[
        Format, typer.Option("--format", "-f", help="table (the report), json, or csv/tsv: one row per model call.")
    ] = Format.table,
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

    store = Store.open_readonly(db) if fork_at is None else Store.open(db)
    if fork_at is None:
        from personae.orchestrator.replay import replay_run
        from personae.render import REPLAY_COLUMNS, replay_json, replay_rows, replay_text

        report = replay_run(store, run_id, scenario_file=scenario, keep_going=all_differences)
        store.close()
        if format is Format.json:
            write(replay_json(report) + "\n")
        elif format is not Format.table:
            write(render_rows(replay_rows(report), REPLAY_COLUMNS, format))
        else:
            out.print(shown(replay_text(report, verbose=verbose)))
        if not report.identical:
            raise typer.Exit(1)
        return

    from personae.llm.backends import check_model_flag
    from personae.orchestrator.replay import fork_run
    from personae.orchestrator.resume import backend_for_run

    parent = store.run(run_id)
    kind, chosen = backend_for_run(parent, backend.value if backend else None, model)
    check_model_flag(kind, model)
    llm = _backend(
        kind, chosen, num_ctx=parent.num_ctx, base_url=base_url, retries=retries,
        retry_delay=retry_delay, quiet=quiet,
    )
    fork = fork_run(store, run_id, fork_at, llm, max_turns=max_turns)
    out.print(f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}")
    out.print(
        f"run {fork.run_id} ← run {run_id}@{fork_at}: turns 1–{fork_at} are copied from run "
        f"{run_id} (no model call), then it goes on live up to {count(fork.orchestrator.settings.max_turns, 'turn')}"
    )
    _drive(fork.orchestrator, store, fork.run_id, quiet=quiet, db=db)
    if fork.replay.divergences:
        first = fork.replay.divergences[0]
        err.print(
            f"[yellow]Note:[/] the copied turns were answered with run {run_id}'s replies, but "
            f"the prompts now differ from {shown(first.describe())} "
            f"(see `{shown(f'personae replay {run_id}{_db_flag(db)}')}`)."
        )


FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format", "-f",
        help="table (a terminal's default), or json, csv, tsv (piped output's default: tsv, "
        "whole values, one record per line).",
        show_default=False,
    ),
]


def _format(chosen: Format | None) -> Format:
    """What to print when the user did not say: a table for a person, TSV for a pipe."""
    if chosen is not None:
        return chosen
    return Format.table if out.is_terminal else Format.tsv


RUN_COLUMNS = (
    "id", "scenario", "model", "backend", "turns", "prompt_tokens", "evaluated_tokens",
    "completion_tokens", "status", "stop_reason", "started", "parent_run_id", "fork_turn",
)


@app.command(rich_help_panel="Inspect")
@user_errors
def runs(
    db: DbOption = None,
    format: FormatOption = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, max=INT64_MAX, help="Show only the newest N runs."),
    ] = None,
) -> None:
    """List runs: id, scenario, model, turns, tokens, status and why each stopped."""
    from personae.liveness import process_alive
    from personae.render import run_dict
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        rows = store.runs(limit)
    fmt = _format(format)
    if fmt is Format.json:
        write(json.dumps([run_dict(r) for r in rows], ensure_ascii=False, indent=2) + "\n")
        return
    listed = []
    for r in rows:
        status = r.status
        if status == "running" and not process_alive(r.pid, r.heartbeat_at or r.started_at):
            status = "stale (resumable)"  # its process died without a word: kill -9, power loss
        listed.append({
            "id": r.id, "scenario": r.scenario_name, "model": r.model, "backend": r.backend,
            "turns": r.turns, "prompt_tokens": r.prompt_tokens,
            "evaluated_tokens": r.evaluated_tokens, "completion_tokens": r.completion_tokens,
            "status": status, "stop_reason": r.stop_reason, "started": r.started_at,
            "parent_run_id": r.parent_run_id, "fork_turn": r.fork_turn,
        })
    if fmt is not Format.table:
        write(render_rows(listed, RUN_COLUMNS, fmt))
        return
    out.print(runs_table(listed, out.width))


def _run_refs(value: Any) -> Any:
    """RUN as typed, checked at the edge like ``RunArgument``: an id from 0 to 2**63-1 (beyond 64
    bits SQLite would fail with an OverflowError deep inside) or ``last``; anything else is a
    usage error before any database is opened."""
    for ref in value if isinstance(value, list) else [value]:
        if ref is None or ref.strip().lower() == "last":
            continue
        try:
            number = int(ref)
        except ValueError:
            raise typer.BadParameter(
                f"expected a run id or `last`, not {ref!r}. List the runs with: personae runs"
            ) from None
        if not 0 <= number <= INT64_MAX:
            raise typer.BadParameter(f"{ref} is not a run id: ids run from 0 to {INT64_MAX}.")
    return value


RunArg = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN", help="A run id, or `last` for the newest run.", show_default=False,
        callback=_run_refs,
    ),
]


def _run_id(store: Any, ref: str | None, *, last: bool = False) -> int:
    """RUN (checked by ``_run_refs``) as an id: ``last`` (also ``--last``) is the newest run in
    the database."""
    if last or (ref or "").strip().lower() == "last":
        newest = store.runs(1)
        if not newest:
            raise UserError(f"{store.path} has no runs yet, so there is no last one.")
        return int(newest[0].id)
    if ref is None:
        raise UserError("Name a run: personae show RUN (an id from `personae runs`, or `last`).")
    return int(ref)


@app.command(rich_help_panel="Inspect")
@user_errors
def show(
    run_ref: RunArg = None,
    db: DbOption = None,
    last: Annotated[bool, typer.Option("--last", help="The newest run.")] = False,
    turn: Annotated[
        int | None, typer.Option("--turn", "-t", min=1, help="Only this turn (search hits name turns).")
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
    from personae.render import MESSAGE_FIELDS, message_dict, run_json, run_markdown, run_text
    from personae.store.repo import Store

    if memory and format not in (ShowFormat.text, ShowFormat.table, ShowFormat.json):
        raise UserError(
            f"show --memory prints text or json, not {format.value}: use --format text or --format json."
        )
    if memory and turn is not None:
        raise UserError("--turn picks a turn of the transcript; leave it out with --memory.")
    with Store.open_readonly(db) as store:
        run_id = _run_id(store, run_ref, last=last)
        run_row = store.run(run_id)
        messages = [] if memory else store.messages(run_id)
        nodes = store.memory_nodes(run_id) if memory else []
        edges = store.memory_edges(run_id) if memory else []
    if turn is not None:
        messages = [m for m in messages if m.turn == turn]
        if not messages:
            raise UserError(
                f"Run {run_id} has no turn {turn} (it has turns 1 to {run_row.turns})."
                if run_row.turns else f"Run {run_id} has no turns yet."
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
        from personae.views import transcript

        out.print(transcript(run_row, messages, thoughts=thoughts))
    else:
        write(run_text(run_row, messages, thoughts=thoughts) + "\n")


SEARCH_COLUMNS = ("run_id", "where", "turn", "persona", "kind", "node_id", "snippet", "also_in_runs")


@app.command(rich_help_panel="Inspect")
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
    run_id: Annotated[int | None, typer.Option("--run", max=INT64_MAX, help="Only this run.")] = None,
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
        hits = group_hits(store.search(query, run_id=run_id, limit=wide), lambda h: (h.persona, h.text), limit)
        found = group_hits(store.search_memory(query, run_id=run_id, limit=wide), lambda h: (h.kind, h.text), limit)
    if not hits and not found:
        err.print(f"Nothing matches {inert(repr(query))} in messages, memory or documents.", markup=False)
        raise typer.Exit(1)
    rows = [
        {"run_id": g.first.run_id, "where": "message", "turn": g.first.turn, "persona": g.first.persona,
         "kind": "message", "node_id": None, "snippet": g.first.snippet,
         "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
        for g in hits
    ] + [
        {"run_id": g.first.run_id, "where": "memory", "turn": g.first.turn, "persona": None,
         "kind": g.first.kind, "node_id": g.first.node_id, "snippet": g.first.snippet,
         "also_in_runs": sorted({h.run_id for h in g.hits[1:]} - {g.first.run_id})}
        for g in found
    ]
    if format is not Format.table:
        write(render_rows(rows, SEARCH_COLUMNS, format))
        return
    from personae.views import search_line

    for row in rows:
        out.print(search_line(row))


class ExportFormat(str, Enum):
    json = "json"
    md = "md"


@app.command(rich_help_panel="Inspect")
@user_errors
def export(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run id, or `last`.", callback=_run_refs)],
    format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="json: everything stored (run, personas, messages, "
                     "model calls, memory graph); md: the transcript as Markdown."),
    ] = ExportFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    thoughts: Annotated[bool, typer.Option("--thoughts", help="md: include hidden thinking.")] = False,
    db: DbOption = None,
) -> None:
    """Export one run: all of it as JSON, or its transcript as Markdown."""
    from personae.render import export_json, run_markdown
    from personae.store.repo import Store

    with Store.open_readonly(db) as store:
        run_id = _run_id(store, run_ref)
        run_row = store.run(run_id)
        messages = store.messages(run_id)
        if format is ExportFormat.json:
            text = export_json(
                run_row, store.run_personas(run_id), messages, store.calls(run_id),
                store.memory_nodes(run_id), store.memory_edges(run_id),
            )
        else:
            text = run_markdown(run_row, messages, thoughts=thoughts)
    _write_out(text + "\n", output, format.value)


def _write_out(text: str, output: Path | None, what: str) -> None:
    """stdout (inert, as every document we print), or the file of ``-o`` as stored (a short note
    on stdout then)."""
    if output is None:
        write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {output}: {exc.strerror or exc}. Choose another -o path.") from None
    out.print(f"wrote {inert(output)} ({what})", markup=False)


@app.command(rich_help_panel="Manage")
@user_errors
def delete(
    run_refs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Run ids (or `last`).", callback=_run_refs)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    db: DbOption = None,
) -> None:
    """Delete runs with their messages, model calls and memory (their forks are kept)."""
    from personae.liveness import process_alive
    from personae.store.repo import Store
    from personae.words import count

    _require_personae_database(db)  # never create or convert a file just to delete from it
    with Store.open(db) as store:
        ids = sorted({_run_id(store, ref) for ref in run_refs})
        rows = [store.run(i) for i in ids]  # names the first unknown id, and deletes nothing
        live = [r.id for r in rows if r.status == "running" and process_alive(r.pid, r.heartbeat_at or r.started_at)]
        if live:
            raise UserError(
                f"Run {', '.join(map(str, live))} is running in process {rows[ids.index(live[0])].pid}; "
                "stop it (Ctrl-C) before deleting it. Nothing was deleted."
            )
        listing = ", ".join(f"{r.id} ({inert(r.scenario_name)}, {count(r.turns, 'turn')})" for r in rows)
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(
                    f"Deleting {listing} needs a yes: pass --yes (standard input is not a "
                    "terminal to ask on). Nothing was deleted."
                )
            if not typer.confirm(f"Delete run {listing} from {inert(store.path)}?", default=False):
                out.print("Nothing was deleted.")
                raise typer.Exit(1)
        store.delete_runs(ids)
        out.print(f"Deleted {count(len(ids), 'run')}: {listing}.", markup=False)


class GraphFormat(str, Enum):
    json = "json"
    graphml = "graphml"
    mermaid = "mermaid"
    dot = "dot"


@app.command(rich_help_panel="Inspect")
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

    with Store.open_readonly(db) as store:
        text = export(load_graph(store, run_id), format.value)
    if output is None:
        write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {output}: {exc.strerror or exc}. Choose another -o path.")
    out.print(f"wrote {shown(output)} ({format.value})")


SCORE_COLUMNS = (
    "turn", "persona", "good", "failures", "copied", "topic_words", "cut", "contract",
)


@app.command(rich_help_panel="Inspect")
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
        run_id = _run_id(store, run_ref)
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
    fmt = _format(format)
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
            str(row["turn"]), Text(inert(row["persona"])), "good" if row["good"] else row["failures"],
            f"{row['copied']:.0%}", str(row["topic_words"]), "cut" if row["cut"] else "",
            row["contract"] or "",
        )
    out.print(table)
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary.counts.items())
    rate = summary.contract_rate
    kept = f" · contracts kept {summary.contracts_kept}/{summary.contracts}" if rate is not None else ""
    out.print(f"{summary.good}/{summary.replies} good ({summary.good_ratio:.0%}) · {counts}{kept}")


@app.command(rich_help_panel="Files")
@user_errors
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Persona or scenario files.")],
    allow_dir: AllowDirOption = None,
) -> None:
    """Check persona and scenario files; exit 2 if any is invalid."""
    from personae.config import validate_file
    from personae.errors import ConfigError

    failed = 0
    for path in files:
        try:
            out.print(f"[green]ok[/] {shown(str(path))}: {shown(validate_file(path, allowed_dirs=allow_dir or ()))}")
        except ConfigError as exc:
            failed += 1
            err.print(f"[bold red]Error:[/] {shown(str(exc))}")
    if failed:
        raise typer.Exit(2)


@app.command(rich_help_panel="Files")
@user_errors
def personas(
    folder: Annotated[Path, typer.Option(help="Also list personas from this folder.")] = Path("personas"),
) -> None:
    """List the built-in personas and those in ./personas; a local one with a built-in's name
    is the one scenarios get (after personas/ beside the scenario), and the listing says so."""
    from personae.config import builtin_dir, builtin_personas, load_persona_file

    local = []
    if folder.is_dir() and folder.resolve() != (builtin_dir() / "personas").resolve():
        local = [
            (path, load_persona_file(path, folder=folder))
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        ]
    local_names = {persona.name: path for path, persona in local}
    table = Table()
    for column in ("name", "description", "from"):
        table.add_column(column)
    for path, persona in local:
        note = " (used instead of the built-in)" if persona.name in builtin_personas() else ""
        table.add_row(Text(inert(persona.name)), Text(inert(persona.description)), Text(inert(f"{path}{note}")))
    for persona in builtin_personas().values():
        shadow = local_names.get(persona.name)
        where = f"built-in (not used: {inert(shadow)} has this name)" if shadow else "built-in"
        table.add_row(
            Text(inert(persona.name)), Text(inert(persona.description)),
            Text(where, style="dim" if shadow else ""),
        )
    out.print(table)


@app.command(rich_help_panel="Files")
@user_errors
def scenarios(
    folder: Annotated[Path, typer.Option(help="Also list scenarios from this folder.")] = Path("scenarios"),
) -> None:
    """List the scenarios `personae run NAME` finds: those in ./scenarios, then the built-ins."""
    from personae.config import load_scenario
    from personae.config.catalog import scenario_files
    from personae.errors import ConfigError

    table = Table()
    for column in ("name", "goal", "from"):
        table.add_column(column)
    files = scenario_files(folder)
    local = {f.name: f.path for f in files if not f.builtin}
    for file in files:
        try:
            goal = load_scenario(file.path).scenario.goal.strip().splitlines()[0]
        except ConfigError as exc:
            goal = f"(invalid: {str(exc)[:120]})"
        if file.builtin:
            shadow = local.get(file.name)
            where = f"built-in (not used: {shadow} has this name)" if shadow else "built-in"
        else:
            where = str(file.path)
        table.add_row(Text(inert(file.name)), Text(inert(goal)), Text(inert(where)))
    out.print(table)


@app.command(rich_help_panel="Files")
@user_errors
def schema(kind: Annotated[SchemaKind, typer.Argument()]) -> None:
    """Print the JSON Schema of persona or scenario files, for editor autocompletion."""
    from personae.config import json_schema

    sys.stdout.write(json.dumps(json_schema(kind.value), indent=2) + "\n")


@app.command(rich_help_panel="Files")
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


class NewKind(str, Enum):
    persona = "persona"
    scenario = "scenario"


@app.command(rich_help_panel="Files")
@user_errors
def new(
    kind: Annotated[NewKind, typer.Argument(help="persona or scenario")],
    name: Annotated[str, typer.Argument(help="Its name: Reviewer, db-migration.")],
    folder: Annotated[
        Path | None, typer.Option(help="Where to write it (default: ./personas or ./scenarios).")
    ] = None,
) -> None:
    """Write a commented template (with the schema line for editors) to fill in."""
    import re
    from importlib.resources import files

    from personae.config import json_schema

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}", name):
        raise UserError(
            f"{name!r} cannot name a {kind.value}: use letters, digits, spaces, '-' or '_' "
            "(at most 64, starting with a letter or digit)."
        )
    target_dir = folder or Path(f"{kind.value}s")
    target = target_dir / f"{re.sub(r'[ _]+', '-', name.strip()).lower()}.yaml"
    if target.exists():
        raise UserError(f"{target} already exists; nothing was written. Choose another name or --folder.")
    template = files("personae") / "templates" / f"{kind.value}.yaml"
    text = template.read_text(encoding="utf-8").format(name=name.strip())
    schema = target_dir / f"{kind.value}.schema.json"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if not schema.exists():
            schema.write_text(json.dumps(json_schema(kind.value), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"Cannot write {target}: {exc.strerror or exc}. Choose another --folder.") from None
    out.print(
        f"wrote {inert(target)} (and {inert(schema)} for editors); check it with: "
        f"{inert(f'personae validate {shlex.quote(str(target))}')}",
        markup=False,
    )


@app.command(rich_help_panel="Setup")
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


db_app = typer.Typer(
    help="Where the database is, and upgrading an older one.", no_args_is_help=True
)
app.add_typer(db_app, name="db", rich_help_panel="Inspect")


@db_app.command("path")
@user_errors
def db_path(db: DbOption = None) -> None:
    """Print the database's path (or URL), as --db / PERSONAE_DB / ./personae.db resolve it,
    without opening it: `datasette "$(personae db path)"`."""
    from personae.store.db import database_url, display_path

    sys.stdout.write(display_path(database_url(db)) + "\n")


@db_app.command("upgrade")
@user_errors
def db_upgrade(db: DbOption = None) -> None:
    """Upgrade a database written by an older Personae to this version's schema (after a backup
    copy); read-only commands never do this themselves."""
    from personae.store.db import database_url, display_path
    from personae.store.repo import Store

    url = database_url(db)
    if _require_personae_database(db):
        out.print(f"{shown(display_path(url))} is already at this version's schema.")
        return
    with Store.open(db) as store:
        out.print(shown(store.notice or f"{store.path} is at this version's schema."))


def _require_personae_database(db: str | None) -> bool:
    """For a command that writes to an existing database: raise if the file is missing or not
    Personae's (the read-only check's errors); True if it is at this version's schema, False if
    it is an older Personae schema that opening it for writing will upgrade."""
    from personae.store.db import database_url, open_readonly
    from personae.errors import StoreError

    try:
        open_readonly(database_url(db)).dispose()
    except StoreError as exc:
        if "older schema" not in str(exc):
            raise
        return False
    return True


def main() -> None:
    app()


if __name__ == "__main__":
    main()
