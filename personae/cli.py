"""The ``personae`` command: parse arguments, call the library, render with rich.

Errors a user can act on (``PersonaeError``) become one paragraph and an exit code here, and only
here: 1 runtime failure, 2 bad input or usage, 130 interrupted. ``PERSONAE_DEBUG=1`` re-raises
them with their traceback.
"""

from __future__ import annotations

import json
import os
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
from rich.markup import escape
from rich.table import Table

from personae.errors import PersonaeError, UserError

app = typer.Typer(
    help="Personae: YAML-defined personas deliberating on one local model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database file or SQLAlchemy URL [env PERSONAE_DB; ./personae.db]."),
]


class Layout(str, Enum):
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
            err.print(f"[bold red]Error:[/] {escape(str(exc))}")
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
    max_turns: Annotated[int | None, typer.Option(min=1, help="Override termination.max_turns.")] = None,
    layout: Annotated[Layout | None, typer.Option(help="Prompt layout (default: the scenario's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, for repeatable runs.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary, no live turns.")] = False,
) -> None:
    """Run a scenario, streaming each turn to the terminal."""
    from personae.config import load_scenario
    from personae.llm.select import open_backend
    from personae.orchestrator.run import Orchestrator, settings_for, start_run
    from personae.store.repo import Store

    loaded = load_scenario(scenario)
    chosen_model = model or loaded.scenario.model
    llm = open_backend(
        backend.value, chosen_model, num_ctx=loaded.scenario.memory.num_ctx, base_url=base_url
    )
    store = Store.open(db)
    settings = settings_for(
        loaded, llm, layout=layout.value if layout else None, max_turns=max_turns, seed=seed
    )
    out.print(f"backend: {llm.name} · model: {llm.model} · db: {store.path}")
    if store.notice:
        out.print(store.notice)
    run_id = start_run(store, loaded, llm, settings)
    out.print(
        f"run {run_id} · scenario {loaded.scenario.name} · layout {settings.layout} · "
        f"window {settings.num_ctx} tokens · up to {settings.max_turns} turns"
    )
    orchestrator = Orchestrator(loaded, llm, store, settings)
    _drive(orchestrator, store, run_id, quiet=quiet, db_flag=f" --db {db}" if db else "")


def _drive(orchestrator: Any, store: Any, run_id: int, *, quiet: bool, db_flag: str) -> None:
    from personae.orchestrator.state import Stopped, TurnDone, TurnStarted

    stream = None if quiet else (lambda piece: out.print(escape(piece), end=""))
    try:
        for event in orchestrator.run(run_id, on_token=stream):
            if isinstance(event, TurnStarted) and not quiet:
                phase = f" · {event.phase}" if event.phase else ""
                out.rule(f"[bold]{event.turn}. {escape(event.persona)}[/]{escape(phase)}", align="left")
            elif isinstance(event, TurnDone) and not quiet:
                u = event.usage
                out.print(
                    f"\n[dim]{u.prompt_tokens} prompt tokens ({u.evaluated_tokens} evaluated), "
                    f"{u.completion_tokens} generated, {event.seconds:.1f} s[/]"
                )
            elif isinstance(event, Stopped):
                out.print(f"\nstopped: {event.reason}")
    except KeyboardInterrupt:
        err.print(f"[yellow]Interrupted.[/] Run {run_id} is saved up to its last complete turn.")
        raise typer.Exit(130) from None
    finally:
        _summary(store, run_id, db_flag)


def _summary(store: Any, run_id: int, db_flag: str) -> None:
    run = store.run(run_id)
    messages = store.messages(run_id)
    table = Table(title=f"Run {run_id}: {run.scenario_name} — {run.status}")
    for column in ("persona", "turns", "words"):
        table.add_column(column, justify="left" if column == "persona" else "right")
    counts = Counter(m.persona for m in messages)
    for persona, n in counts.items():
        words = sum(len(m.content.split()) for m in messages if m.persona == persona)
        table.add_row(persona, str(n), str(words))
    out.print(table)
    out.print(
        f"{run.turns} turns · {run.prompt_tokens} prompt tokens, {run.evaluated_tokens} evaluated, "
        f"{run.completion_tokens} generated · transcript: personae show {run_id}{db_flag}"
    )


@app.command()
@user_errors
def runs(
    db: DbOption = None,
    format: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.table,
    limit: Annotated[int | None, typer.Option(help="Show only the newest N runs.")] = None,
) -> None:
    """List runs: id, scenario, model, turns, tokens, status and why each stopped."""
    from personae.render import run_dict
    from personae.store.repo import Store

    with Store.open(db) as store:
        rows = store.runs(limit)
    if format is ListFormat.json:
        out.print_json(json.dumps([run_dict(r) for r in rows], ensure_ascii=False))
        return
    table = Table()
    for column in ("id", "scenario", "model", "backend", "turns", "tokens (prompt/eval/gen)", "status", "stopped by", "started"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id), escape(r.scenario_name), escape(r.model), r.backend, str(r.turns),
            f"{r.prompt_tokens}/{r.evaluated_tokens}/{r.completion_tokens}", r.status,
            r.stop_reason or "", r.started_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command()
@user_errors
def show(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    db: DbOption = None,
    thoughts: Annotated[bool, typer.Option("--thoughts", help="Include hidden thinking.")] = False,
    format: Annotated[ShowFormat, typer.Option("--format", "-f")] = ShowFormat.text,
) -> None:
    """Print the transcript of a run."""
    from personae.render import run_json, run_markdown, run_text
    from personae.store.repo import Store

    with Store.open(db) as store:
        run_row = store.run(run_id)
        messages = store.messages(run_id)
    if format is ShowFormat.json:
        sys.stdout.write(run_json(run_row, messages) + "\n")
    elif format is ShowFormat.md:
        sys.stdout.write(run_markdown(run_row, messages, thoughts=thoughts) + "\n")
    else:
        sys.stdout.write(run_text(run_row, messages, thoughts=thoughts) + "\n")


@app.command()
@user_errors
def search(
    query: Annotated[str, typer.Argument(help="Words to find in every transcript.")],
    db: DbOption = None,
    run_id: Annotated[int | None, typer.Option("--run", help="Only this run.")] = None,
    limit: int = 20,
) -> None:
    """Full-text search over every transcript (SQLite FTS5)."""
    from personae.store.repo import Store

    with Store.open(db) as store:
        hits = store.search(query, run_id=run_id, limit=limit)
    if not hits:
        out.print(f"No messages match {query!r}.")
        raise typer.Exit(1)
    for hit in hits:
        out.print(f"run {hit.run_id} · turn {hit.turn} · {escape(hit.persona)}: {escape(hit.snippet)}")


@app.command()
@user_errors
def validate(files: Annotated[list[Path], typer.Argument(help="Persona or scenario files.")]) -> None:
    """Check persona and scenario files; exit 2 if any is invalid."""
    from personae.config import validate_file
    from personae.errors import ConfigError

    failed = 0
    for path in files:
        try:
            out.print(f"[green]ok[/] {escape(str(path))}: {escape(validate_file(path))}")
        except ConfigError as exc:
            failed += 1
            err.print(f"[bold red]Error:[/] {escape(str(exc))}")
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
        table.add_row(persona.name, escape(persona.description), "built-in")
    if folder.is_dir() and folder.resolve() != (builtin_dir() / "personas").resolve():
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            persona = load_persona_file(path)
            table.add_row(persona.name, escape(persona.description), escape(str(path)))
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
    for sub in ("personas", "scenarios"):
        for path in sorted((source / sub).rglob("*")):
            if not path.is_file() or path.suffix not in {".yaml", ".yml", ".md", ".txt"}:
                continue
            target = folder / sub / path.relative_to(source / sub)
            if target.exists():
                out.print(f"kept {target} (already exists)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            out.print(f"wrote {target}")
    out.print(f"Next: personae run {folder / 'scenarios' / 'cache-review.yaml'}")


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
        out.print(f"{mark} {escape(check.name)}: {escape(check.detail)}")
        if not check.ok and check.fix:
            out.print(f"   fix: {escape(check.fix)}")
        usable = usable and (check.ok or check.optional)
    if not usable:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
