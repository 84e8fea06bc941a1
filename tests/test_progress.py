"""A progress line while the model works: shown in a terminal while a call waits for its first
token, gone (erased, not left on screen) once text arrives, never written when output is piped.
The screen is what a terminal emulator (pyte) makes of the bytes, as a person would see it."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pyte
import pytest
from rich.console import Console

from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.cli.progress import Progress, ProgressBackend
from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario


def screen_of(raw: str, columns: int = 80, lines: int = 30) -> list[str]:
    screen = pyte.Screen(columns, lines)
    stream = pyte.Stream(screen)
    stream.feed(raw.replace("\n", "\r\n"))
    return [line.rstrip() for line in screen.display]


class SlowFirstToken(ScriptedBackend):
    """Waits before its first token, as a model reading its prompt does."""

    def __init__(self, wait: float, peek: object = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.wait = wait
        self.peek = peek  # what the terminal got so far, read just before the first token
        self.seen: list[str] = []

    def chat(self, request, on_token=None):  # type: ignore[no-untyped-def]
        time.sleep(self.wait)
        if callable(self.peek):
            self.seen.append(self.peek())
        return super().chat(request, on_token)


def test_the_line_shows_while_waiting_and_is_erased_when_text_arrives() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    model = SlowFirstToken(1.3, peek=buffer.getvalue, default="Add a read replica first.")
    backend = ProgressBackend(model, Progress(console))
    request = ChatRequest(messages=(ChatMessage("system", "Plan."), ChatMessage("user", "It is your turn.")))
    result = backend.chat(request, on_token=lambda piece: console.print(piece, end=""))
    assert result.text == "Add a read replica first."
    before = "\n".join(screen_of(model.seen[0]))
    assert re.search(r"reading about \d+ prompt tokens · 1 s", before), before  # the seconds count
    assert re.search(r"reading about \d+ prompt tokens · \d+ s", before), before
    after = screen_of(buffer.getvalue())
    assert after[0] == "Add a read replica first.", after[:3]
    assert not any("reading" in line for line in after)


def test_nothing_when_the_console_is_not_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=80)
    backend = ProgressBackend(SlowFirstToken(0.3, default="ok then"), Progress(console))
    backend.chat(ChatRequest(messages=(ChatMessage("user", "hi"),)), on_token=lambda p: console.print(p, end=""))
    assert buffer.getvalue() == "ok then"


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    return write_scenario(tmp_path, scenario_text("termination: {max_turns: 1}\n", num_predict=40))


def _pty_env(cli_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    return env


@pytest.mark.slow
def test_a_real_run_shows_progress_in_a_terminal_only(scenario_file: Path, cli_env: dict[str, str]) -> None:
    child = pexpect.spawn(
        personae_cmd()[0], personae_cmd("run", str(scenario_file), "--backend", "embedded")[1:],
        env=_pty_env(cli_env), dimensions=(30, 80), encoding="utf-8", timeout=240,
    )
    child.logfile_read = everything = io.StringIO()
    child.expect(r"reading \d+ prompt tokens · \d+ s")
    child.expect(r"generated.*, [\d.]+ s")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    final = "\n".join(screen_of(everything.getvalue(), 80, 30))
    assert "reading" not in final and "loading the model" not in final
    assert re.search(r"generated, [\d.]+ tokens/s, [\d.]+ s", final), final

    piped = subprocess.run(
        personae_cmd("run", str(scenario_file), "--backend", "embedded"),
        capture_output=True, text=True, env=cli_env, timeout=240,
    )
    assert piped.returncode == 0, piped.stderr
    for stream in (piped.stdout, piped.stderr):
        assert "reading" not in stream and "loading the model" not in stream
        assert not re.search("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]", stream) and "\x1b[" not in stream


@pytest.mark.slow
def test_interrupted_starts_its_own_line_after_half_a_reply(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = write_scenario(tmp_path, scenario_text("termination: {max_turns: 1}\n", num_predict=200))
    child = pexpect.spawn(
        personae_cmd()[0], personae_cmd("run", str(path), "--backend", "embedded")[1:],
        env=_pty_env(cli_env), dimensions=(30, 80), encoding="utf-8", timeout=240,
    )
    child.logfile_read = everything = io.StringIO()  # every byte read, whichever call reads it
    child.expect(r"1\. Planner")
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:  # until the reply has begun: the spinner gone, words on screen
        try:
            child.read_nonblocking(4096, timeout=0.5)
        except pexpect.TIMEOUT:
            pass
        screen = screen_of(everything.getvalue())
        rows = [i for i, line in enumerate(screen) if "1. Planner" in line]
        assert rows, screen
        row = rows[0]
        below = [line for line in screen[row + 1:] if line.strip()]
        if below and "reading" not in below[0] and len(below[0].split()) >= 2:
            break
    else:
        pytest.fail("no reply text streamed")
    os.kill(child.pid, signal.SIGINT)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    screen = screen_of(everything.getvalue())
    interrupted = [line for line in screen if "Interrupted." in line]
    assert interrupted and interrupted[0].startswith("Interrupted."), screen
