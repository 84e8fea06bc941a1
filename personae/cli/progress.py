"""A sign of life while the model works: one transient spinner line in a terminal, nothing else.

A small model on two cores can take 20 s before its first token, and a blank screen under a turn's
heading reads as a hang. ``Progress`` shows what is happening — loading the model, then reading
N prompt tokens, with the seconds so far — and erases itself the moment text arrives. It is
built only for a terminal: when output is piped or ``--quiet``, the CLI makes none, so no
spinner characters ever reach a file. ``ProgressBackend`` wraps a backend, like the retrying
wrapper, so the run loop knows nothing of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.text import Text

from personae.llm.base import ChatRequest, ChatResult, TokenCallback


class Progress:
    """The spinner line on ``console``; one at a time, stopped by the first streamed token."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    def show(self, what: str) -> None:
        """Start (or re-word) the spinner: ``what`` is plain text, never markup."""
        line = _Elapsed(what)
        if self._status is None:
            self._status = Status(line, console=self.console, spinner="dots", refresh_per_second=8)
            self._status.start()
        else:
            self._status.update(line)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()  # transient: the line is erased, the cursor back where it was
            self._status = None

    @contextmanager
    def during(self, what: str) -> Iterator[None]:
        self.show(what)
        try:
            yield
        finally:
            self.stop()


class _Elapsed:
    """What is happening and the seconds since it began, re-drawn at every refresh."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since = time.monotonic()

    def __rich__(self) -> Text:
        return Text(f"{self.what} · {time.monotonic() - self.since:.0f} s", style="dim")


class ProgressBackend:
    """A backend that shows ``Progress`` while each call waits for its first token."""

    def __init__(self, inner: Any, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def model(self) -> str:
        return str(self.inner.model)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        tokens = self.inner.count_tokens(request.messages)
        exact = self.inner.name == "embedded"  # the others' counts are estimates until they answer
        self.progress.show(f"reading {'' if exact else 'about '}{tokens:,} prompt tokens")

        def streamed(piece: str) -> None:
            self.progress.stop()  # text arrives: the spinner goes (a no-op once it has)
            on_token(piece)  # type: ignore[misc]

        try:
            return self.inner.chat(request, on_token=streamed if on_token is not None else None)
        finally:
            self.progress.stop()
