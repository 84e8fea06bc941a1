"""The live stream of a run: each event of the run loop as the terminal shows it, Ctrl-C and
SIGTERM as a resumable interrupt, and the summary table at the end.

The run loop yields typed events and never prints; this module is where they become lines.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from personae.cli.output import db_flag, err, out, shown
from personae.cli.terminal import inert
from personae.errors import PersonaeError

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported by the commands that open one
    from personae.orchestrator.run import Orchestrator
    from personae.orchestrator.state import RunState
    from personae.store.repo import Store


def ask_user(state: RunState) -> str | None:
    """--interactive: one line from stdin between turns; an empty line (or end of input) passes."""
    out.print(f"[bold]User[/] (message {state.turn + 1}, empty line to pass)> ", end="")
    line = sys.stdin.readline()
    if not line:
        out.print()
    return line.strip() or None


def release_new_run(store: Store, run_id: int | None = None) -> None:
    """Interrupted before the run loop could say so (while the run row was being made, or
    before the loop began): if this process holds the run (``run_id``, else the newest), it is
    ``interrupted`` (resumable), not ``running`` with nobody running it."""
    rows = [store.run(run_id)] if run_id is not None else store.runs(1)
    if rows and rows[0].status == "running" and rows[0].pid == os.getpid():
        store.finish_run(rows[0].id, "interrupted", stop_reason="interrupted")


def drive(
    orchestrator: Orchestrator, store: Store, run_id: int, *, quiet: bool, db: str | None,
    announce: str | None = None,
) -> None:
    """Run the loop of ``orchestrator`` over run ``run_id``, printing each event (only the
    summary with ``quiet``). An interrupt or one of our errors leaves the run resumable and says
    how to resume it; the summary is printed however the run ended."""
    from personae.orchestrator.state import (
        Collapsed,
        InputGiven,
        Retrying,
        Stopped,
        TurnDone,
        TurnStarted,
    )

    interrupts = Interrupts.install()
    line = OpenLine(out.width if out.is_terminal else None)
    stream = None if quiet else interrupts.guard(line.writer(lambda piece: out.print(shown(piece), end="")))
    flag = db_flag(db)
    resume = f"personae resume {run_id}{flag}"
    row = store.run(run_id)
    colours = SpeakerColours([m.persona for m in store.messages(run_id)])
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
                colour = colours.of(event.persona)
                out.rule(f"[bold {colour}]{event.turn}. {shown(event.persona)}[/]{shown(phase)}{copied}", align="left")
            elif isinstance(event, Retrying) and not quiet:
                line.close()
                why = ", ".join(p.replace("_", " ") for p in event.problems)
                before = f", {event.copied:.0%} said before" if "copy" in event.problems else ""
                out.print(f"[yellow]↻ asking again ({why}{before}): attempt {event.attempt + 1}[/]")
            elif isinstance(event, TurnDone) and not quiet:
                line.close()
                said = event.utterance
                if event.attempts > 1 and event.kept != event.attempts - 1:
                    out.print(f"[yellow]kept attempt {event.kept + 1}:[/]\n{shown(said.content)}", soft_wrap=False)
                elif said.structured is not None and said.turn > (copied_upto or 0):
                    # the stream showed the JSON; the others read it rendered
                    out.print(f"[dim]as the others read it:[/]\n{shown(said.content)}", soft_wrap=False)
                out.print(done_line(event, copied=event.utterance.turn <= (copied_upto or 0)))
                route = (event.utterance.meta or {}).get("route") or {}
                if route.get("by") == "selector":
                    how = "fallback to default" if route.get("fallback") else "chosen by the model"
                    out.print(f"[dim]{how}: {shown(route.get('reason') or route.get('problem') or '')}[/]")
            elif isinstance(event, Collapsed) and not quiet:
                out.print(collapsed_line(event))
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
        release_new_run(store, run_id)  # interrupted before the run loop began: mark it here
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
        summary(store, run_id, flag)


class SpeakerColours:
    """Each persona's colour in the live stream, given as `show` gives it (in order of first
    appearance in the transcript, so a resumed run keeps its colours)."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = list(dict.fromkeys(seen))

    def of(self, name: str) -> str:
        from personae.cli.views import persona_colours

        if name not in self.seen:
            self.seen.append(name)
        return persona_colours(self.seen)[name]


class OpenLine:
    """Whether streamed text left the cursor mid-line, so the next line starts on a new one; and,
    given a ``width`` (a terminal's), the stream word-wrapped to it: a word that would not fit
    starts the next line instead of being split by the terminal."""

    def __init__(self, width: int | None = None) -> None:
        self.open = False
        self.width = width
        self.column = 0
        self.space = ""  # whitespace seen after the last word, written before the next one

    def writer(self, write: Callable[[str], None]) -> Callable[[str], None]:
        def written(piece: str) -> None:
            if self.width is None:
                write(piece)
            else:
                self._wrapped(piece, write)
            if piece:
                self.open = not piece.endswith("\n")

        return written

    def _wrapped(self, piece: str, write: Callable[[str], None]) -> None:
        from rich.cells import cell_len

        assert self.width is not None
        for part in re.split(r"(\n|[^\S\n]+)", piece):
            if not part:
                continue
            if part == "\n":
                write("\n")
                self.column, self.space = 0, ""
            elif part.isspace():
                self.space = part if self.column else ""
            else:
                wide = cell_len(part)
                if self.column and self.column + cell_len(self.space) + wide > self.width:
                    write("\n")
                    self.column, self.space = 0, ""
                write(self.space + part)
                self.column += cell_len(self.space) + wide
                self.space = ""

    def close(self) -> None:
        if self.open:
            out.print()
            self.open = False
        self.column, self.space = 0, ""


def done_line(event: Any, *, copied: bool) -> str:
    """Under a turn: its tokens, speed and seconds; a fork's copied turn says so instead."""
    if copied:
        return "[dim]copied (no model call)[/]"
    u = event.usage
    rate = f", {u.completion_tokens / (u.eval_ns / 1e9):.1f} tokens/s" if u.eval_ns > 0 else ""
    cut = " · [yellow]cut at num_predict[/]" if event.truncated else ""
    if (event.utterance.meta or {}).get("trimmed"):
        cut += "[yellow]: the others read it up to its last complete sentence[/]"
    return (
        f"[dim]{u.prompt_tokens} prompt tokens ({u.evaluated_tokens} evaluated), "
        f"{u.completion_tokens} generated{rate}, {event.seconds:.1f} s[/]{cut}"
    )


def collapsed_line(event: Any) -> str:
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


class Interrupts:
    """Ctrl-C and SIGTERM (a service manager, `kill`) end a run as interrupted and resumable.

    The signal raises KeyboardInterrupt as usual and is also remembered: llama.cpp calls back into
    Python (its log callback) and ctypes swallows an exception raised there, so a remembered
    signal is raised again at the next streamed token or run event."""

    def __init__(self) -> None:
        self.pending = False

    @classmethod
    def install(cls) -> Interrupts:
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


def summary(store: Store, run_id: int, flag: str) -> None:
    """After a run, however it ended: turns and words per persona, the tokens, where to read it."""
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
    from personae.run_format import turns_of, turns_phrase

    out.print(
        f"{turns_phrase(turns_of(messages), len(messages))} · {run.prompt_tokens} prompt tokens, "
        f"{run.evaluated_tokens} evaluated, {run.completion_tokens} generated · transcript: "
        f"{inert(f'personae show {run_id}{flag}')}",
        markup=False,
    )

