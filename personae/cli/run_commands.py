"""The commands that run the model: ``run``, ``resume`` and ``replay`` (whose --fork-at goes on live).

Each one loads what the library needs, opens the model server and the store, and hands the run to
``live.drive``; they differ only in how the run row comes to be (made, claimed, or forked).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from personae.cli.live import Interrupts, ask_user, drive, release_new_run
from personae.cli.model_server import open_model_server
from personae.cli.options import (
    AllowDirOption,
    DbOption,
    RunArg,
    RunArgument,
    complete_scenario,
    resumable_run_id,
    run_id_for,
)
from personae.cli.run_values import OptionOption, VarOption, option_values, variable_values
from personae.cli.output import db_flag, err, out, shown, user_errors, write
from personae.cli.tabular import Format
from personae.cli.tabular import render as render_rows
from personae.errors import UserError
from personae.limits import INT64_MAX, MAX_TURNS, SEED_MAX
from personae.words import count

if TYPE_CHECKING:  # the run loop and the store are imported when a command runs, not for --help
    from personae.config import LoadedScenario
    from personae.llm.base import Backend
    from personae.orchestrator.run import Orchestrator
    from personae.orchestrator.state import RunSettings
    from personae.store.models import Run
    from personae.store.repo import Store


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
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary, no live turns.")]


@user_errors
def run(
    scenario: Annotated[
        Path, typer.Argument(
            metavar="SCENARIO", autocompletion=complete_scenario,
            help="Scenario YAML file, or the name of one in ./scenarios or built in (personae scenarios).",
        )
    ],
    model: Annotated[
        str | None, typer.Option(help="Ollama model name, a .gguf path, or the openai server's model.")
    ] = None,
    backend: Annotated[BackendName, typer.Option(help="Model server.")] = BackendName.auto,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible server for --backend openai (default: $OPENAI_BASE_URL)."),
    ] = None,
    db: DbOption = None,
    max_turns: Annotated[
        int | None, typer.Option(min=1, max=MAX_TURNS, help="Override termination.max_turns.")
    ] = None,
    layout: Annotated[Layout | None, typer.Option(help="Prompt layout (default: the scenario's).")] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=SEED_MAX, help="Sampling seed, for repeatable runs.")
    ] = None,
    quiet: QuietOption = False,
    retries: RetriesOption = None,
    retry_delay: RetryDelayOption = None,
    interactive: Annotated[
        bool,
        typer.Option("--interactive", "-i", help="Take part as User: type a message between turns (empty line to pass)."),
    ] = False,
    allow_dir: AllowDirOption = None,
    var: VarOption = None,
    option: OptionOption = None,
    slots: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Parallel slots of the embedded engine, each with its own cache (default: $PERSONAE_SLOTS, else 1)."),
    ] = None,
) -> None:
    """Run a scenario, streaming each turn to the terminal."""
    Interrupts.install()  # from the start: a SIGTERM in the first second is an interrupt too
    from personae.config import load_scenario
    from personae.config.catalog import find_scenario
    from personae.llm.backends import check_model_flag
    from personae.orchestrator.run import settings_for, start_run
    from personae.orchestrator.shortfall import shortfall
    from personae.store.repo import Store

    loaded = load_scenario(
        find_scenario(scenario), variables=variable_values(var), options=option_values(option),
        allowed_dirs=allow_dir or (),
    )
    check_model_flag(backend.value, model)
    chosen_model = model or loaded.scenario.model
    llm = open_model_server(
        backend.value, chosen_model, num_ctx=loaded.scenario.memory.num_ctx, base_url=base_url,
        retries=retries, retry_delay=retry_delay, quiet=quiet, slots=slots,
    )
    new_file = new_database_file(db)
    store = Store.open(db)
    try:
        settings = settings_for(
            loaded, llm, layout=layout.value if layout else None, max_turns=max_turns, seed=seed
        )
        out.print(banner(llm, store))
        if store.notice:
            out.print(shown(store.notice))
        short = shortfall(loaded.scenario.policy, settings.max_turns)
        if short is not None:
            err.print(f"[yellow]Note:[/] {shown(short.message())}")
        orchestrator = live_orchestrator(loaded, llm, store, settings, interactive=interactive)
    except BaseException:
        discard_if_unused(store, new_file)
        raise
    try:
        run_id = start_run(store, loaded, llm, settings)
    except KeyboardInterrupt:
        release_new_run(store)
        raise
    go_live(
        orchestrator, store, run_id, quiet=quiet, db=db,
        announce=f"run {run_id} · scenario {shown(loaded.scenario.name)} · layout {settings.layout} · "
        f"window {settings.num_ctx} tokens · up to {count(settings.max_turns, 'turn')}",
    )


@user_errors
def resume(
    run_ref: RunArg = None,
    db: DbOption = None,
    backend: Annotated[
        BackendName | None, typer.Option(help="Model server (default: the run's own).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the run's own).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server for --backend openai.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the run's process seems alive.")
    ] = False,
    quiet: QuietOption = False,
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
    """Continue an interrupted, failed or crashed run from its last committed turn (with no RUN,
    the newest such run)."""
    Interrupts.install()
    from personae.config.names import HUMAN
    from personae.orchestrator.resume import (
        check_resumable,
        reload_scenario,
        run_settings,
    )
    from personae.store.repo import Store

    store = Store.open(db)
    if store.notice:
        out.print(shown(store.notice))
    run_id = resumable_run_id(store) if run_ref is None else run_id_for(store, run_ref)
    row = store.run(run_id)
    note = check_resumable(row, force=force, turns=store.persona_turns([run_id], human=HUMAN)[run_id])
    kind, chosen = backend_to_continue(row, backend, model)
    loaded = reload_scenario(store, row, scenario_file=scenario)
    llm = open_model_server(
        kind, chosen, num_ctx=row.num_ctx, base_url=base_url, retries=retries,
        retry_delay=retry_delay, quiet=quiet,
    )
    settings = run_settings(row, loaded, llm)
    orchestrator = live_orchestrator(loaded, llm, store, settings, interactive=interactive)
    if note:
        err.print(f"[yellow]{shown(note)}[/]")
    out.print(banner(llm, store))
    if not store.claim_run(run_id, expected_status=row.status, expected_pid=row.pid):
        raise UserError(f"Run {run_id} changed while resuming it (another `personae resume`?).")
    if scenario is not None:
        store.replace_scenario(run_id, loaded.source_yaml, str(scenario.expanduser().resolve()))
    go_live(
        orchestrator, store, run_id, quiet=quiet, db=db,
        announce=f"resuming run {run_id} · scenario {shown(loaded.scenario.name)} after message "
        f"{row.turns} · up to {count(settings.max_turns, 'turn')}",
    )


@user_errors
def replay(
    run_ref: RunArgument,
    db: DbOption = None,
    fork_at: Annotated[
        int | None,
        typer.Option("--fork-at", min=0, max=INT64_MAX, help="Copy messages 1..N (User's included, as numbered in `show`) into a new run and continue it live."),
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
    run_id = run_id_for(store, run_ref)
    if fork_at is None:
        from personae.orchestrator.replay import replay_run
        from personae.run_format import (
            REPLAY_COLUMNS,
            replay_json,
            replay_rows,
            replay_text,
        )

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

    from personae.orchestrator.replay import fork_run

    parent = store.run(run_id)
    kind, chosen = backend_to_continue(parent, backend, model)
    llm = open_model_server(
        kind, chosen, num_ctx=parent.num_ctx, base_url=base_url, retries=retries,
        retry_delay=retry_delay, quiet=quiet,
    )
    fork = fork_run(store, run_id, fork_at, llm, max_turns=max_turns)
    out.print(banner(llm, store))
    out.print(
        f"run {fork.run_id} ← run {run_id}@{fork_at}: messages 1–{fork_at} are copied from run "
        f"{run_id} (no model call), then it goes on live up to {count(fork.orchestrator.settings.max_turns, 'turn')}"
    )
    drive(fork.orchestrator, store, fork.run_id, quiet=quiet, db=db)
    if fork.replay.divergences:
        first = fork.replay.divergences[0]
        err.print(
            f"[yellow]Note:[/] the copied turns were answered with run {run_id}'s replies, but "
            f"the prompts now differ from {shown(first.describe())} "
            f"(see `{shown(f'personae replay {run_id}{db_flag(db)}')}`)."
        )


def new_database_file(db: str | None) -> Path | None:
    """The SQLite file ``run`` is about to create, or None when it exists (or is a server)."""
    from personae.store.location import SQLITE_PREFIX, database_url, display_path

    url = database_url(db)
    path = Path(display_path(url))
    return path if url.startswith(SQLITE_PREFIX) and not path.exists() else None


def discard_if_unused(store: Store, new_file: Path | None) -> None:
    """A run that never started leaves no database behind: the file this command created is
    removed again while it holds no run (a scenario too big for its window, an interrupt)."""
    if new_file is None or store.runs(1):
        return
    store.close()
    for path in (new_file, *(new_file.with_name(new_file.name + s) for s in ("-wal", "-shm"))):
        path.unlink(missing_ok=True)


def banner(llm: Backend, store: Store) -> str:
    """The first line of a live run: which server, model and database it runs on."""
    return f"backend: {llm.name} · model: {shown(llm.model)} · db: {shown(store.path)}"


def backend_to_continue(row: Run, backend: BackendName | None, model: str | None) -> tuple[str, str | None]:
    """The backend kind and model that continue a stored run (resume, fork): the run's own unless
    the flags say otherwise, checked before any model loads."""
    from personae.llm.backends import check_model_flag
    from personae.orchestrator.resume import backend_for_run

    kind, chosen = backend_for_run(row, backend.value if backend else None, model)
    check_model_flag(kind, model)
    return kind, chosen


def live_orchestrator(
    loaded: LoadedScenario, llm: Backend, store: Store, settings: RunSettings, *, interactive: bool
) -> Orchestrator:
    """The run loop of ``run`` and ``resume``, made before the run row is created or claimed: it
    checks the window, so a scenario that cannot fit leaves no run behind and claims none."""
    from personae.orchestrator.run import Orchestrator

    return Orchestrator(loaded, llm, store, settings, ask_user=ask_user if interactive else None)


def go_live(
    orchestrator: Orchestrator, store: Store, run_id: int, *, quiet: bool, db: str | None, announce: str
) -> None:
    """Drive a run this process has just made or claimed. An interrupt that lands before the run
    loop can record it still leaves the run ``interrupted`` (resumable), not ``running`` with
    nobody running it."""
    try:
        drive(orchestrator, store, run_id, quiet=quiet, db=db, announce=announce)
    except KeyboardInterrupt:
        release_new_run(store, run_id)
        raise
