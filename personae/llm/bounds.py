"""A model server is untrusted input: the client bounds every reply it reads.

A server (or whatever answers at its address) may stream forever, send a reply far longer than
``num_predict``, send lines that are JSON of the wrong shape, or report token counts that are
huge, negative or not numbers. The remote backends (``ollama.py``, ``openai_compat.py``) read
through what is here, so that every such reply ends in one of two ways the run loop already
handles:

- a reply that is merely too long is cut where the bound lies and returned with
  ``done_reason="length"``, as if ``num_predict`` had stopped it (the run goes on);
- a reply that cannot be read (a chunk of the wrong shape, a line longer than any chunk, a stream
  past its total time) is a ``BackendError`` naming the server and what it sent: the run ends
  ``failed`` with the resume hint, every committed turn kept.

Token counts are cleaned by ``count``: a number that is not a whole non-negative number is taken as
not reported (the backend then estimates, as for a server that sends none), and one beyond
``MAX_COUNT`` is clamped, so nothing absurd reaches the run's totals or SQLite's 64-bit columns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from personae.errors import BackendError
from personae.limits import INT64_MAX, MAX_NUM_CTX

# With no num_predict (or -1, "until the model stops"), a reply is bounded by the largest window.
DEFAULT_MAX_TOKENS = 32_768
CHUNKS_PER_TOKEN = 2  # a server may send empty or bookkeeping chunks between tokens
SPARE_CHUNKS = 64
BYTES_PER_TOKEN = 64  # no tokenizer's token is longer; a reply past this is not text of n tokens
MAX_LINE_BYTES = 1024 * 1024  # one stream line (one chunk); far beyond any real one
SECONDS_PER_TOKEN = 1.0  # on top of the between-chunk timeout: a slow CPU model makes ~5 a second
MAX_COUNT = MAX_NUM_CTX * 4  # token counts: no prompt or reply of one call is larger
MAX_NS = INT64_MAX // 2  # durations in nanoseconds: ~146 years


def count(value: Any, cap: int = MAX_COUNT) -> int | None:
    """A count the server reported, made safe to store: None when it is no whole non-negative
    number (a string, a bool, NaN, a negative, a fraction); ``cap`` when it is larger."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if value < 0:
        return None
    return min(value, cap)


def count_or(value: Any, default: int, cap: int = MAX_COUNT) -> int:
    cleaned = count(value, cap)
    return default if cleaned is None else cleaned


@dataclass
class ReplyBounds:
    """What one reply may be: tokens (content chunks), all chunks, bytes, total seconds.

    Made per call from the request's ``num_predict`` and the backend's between-chunk timeout;
    ``take`` is told each piece of content and says how much of it fits.
    """

    server: str  # "The Ollama server at http://…": for messages
    max_tokens: int
    max_chunks: int
    max_bytes: int
    seconds: float  # from the first chunk to the last; the wait for the first is the timeout's
    tokens: int = 0
    chunks: int = 0
    size: int = 0
    cut: bool = False
    deadline: float | None = None  # time.monotonic() past which the reply is abandoned

    @classmethod
    def for_request(
        cls, server: str, options: Mapping[str, Any], timeout: float, max_seconds: float | None = None
    ) -> ReplyBounds:
        asked = count(options.get("num_predict"))
        tokens = asked if asked else DEFAULT_MAX_TOKENS
        tokens = min(tokens, DEFAULT_MAX_TOKENS)
        seconds = max_seconds if max_seconds is not None else timeout + tokens * SECONDS_PER_TOKEN
        return cls(
            server=server,
            max_tokens=tokens + 1,  # servers may send one more piece (the end marker's text)
            max_chunks=tokens * CHUNKS_PER_TOKEN + SPARE_CHUNKS,
            max_bytes=tokens * BYTES_PER_TOKEN,
            seconds=seconds,
        )

    def chunk(self) -> None:
        """One more chunk arrived (content or not): past the chunk bound or the total time, the
        reply is abandoned."""
        self.chunks += 1
        now = time.monotonic()
        if self.deadline is None:  # loading the model and reading the prompt come before it
            self.deadline = now + self.seconds
        if now > self.deadline:
            raise BackendError(
                f"{self.server} was still streaming its reply after {self.seconds:.0f} s, longer "
                "than any reply of this length takes. The server may be stuck or is not a model "
                "server; check it and resume the run."
            )
        if self.chunks > self.max_chunks:
            raise BackendError(
                f"{self.server} sent more than {self.max_chunks} stream chunks for a reply of at "
                f"most {self.max_tokens - 1} tokens. It is not behaving as a model server; check "
                "it and resume the run."
            )

    def take(self, content: str) -> str:
        """The part of ``content`` that fits; after a cut, nothing more is taken."""
        if self.cut:
            return ""
        self.tokens += 1
        room = self.max_bytes - self.size
        encoded = len(content.encode("utf-8"))
        if self.tokens > self.max_tokens or encoded > room:
            self.cut = True
            if encoded > room:
                content = content.encode("utf-8")[: max(0, room)].decode("utf-8", "ignore")
                self.size += len(content.encode("utf-8"))
                return content
            return ""
        self.size += encoded
        return content


def line_too_long(server: str) -> BackendError:
    return BackendError(
        f"{server} sent a stream line longer than {MAX_LINE_BYTES // 1024} KiB, which no chat "
        "chunk is. It is not behaving as a model server; check it and resume the run."
    )


def wrong_shape(server: str, what: str, sent: Any) -> BackendError:
    shown = repr(sent)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return BackendError(
        f"{server} sent {what} of the wrong shape ({shown}). It is not behaving as the model "
        "server Personae expects there; check the address and the server, then resume the run."
    )
