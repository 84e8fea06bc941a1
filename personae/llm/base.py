"""The one small protocol every model backend speaks.

A backend turns a list of chat messages plus Ollama-named options into text and honest usage
numbers. Usage is the point: ``evaluated_tokens`` (prompt tokens the server really had to process,
i.e. the prompt minus the prefix it reused from its cache) is what makes the cache-friendly layout
measurable, so every backend reports it as exactly as its server allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]

# Options use Ollama's names, because Ollama is the primary server; other backends translate them.
# num_ctx, num_predict, temperature, seed, top_p, top_k, repeat_penalty, stop
Options = dict[str, Any]

TokenCallback = Callable[[str], None]


def server_text(text: str) -> str:
    """Text a server sent as JSON, made storable: JSON may escape a lone surrogate
    (``"\\udcff"``), which is no character, cannot be encoded as UTF-8 and would fail the
    run's commit. Each becomes U+FFFD, as invalid bytes do when the embedded backend decodes."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    options: Options = field(default_factory=dict)
    # A JSON Schema the reply must match: Ollama ``format``, a llama.cpp grammar.
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int  # tokens in the prompt as sent
    evaluated_tokens: int  # of those, how many the server actually evaluated (cache misses)
    completion_tokens: int
    total_ns: int = 0
    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0

    @property
    def cached_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.evaluated_tokens)


@dataclass(frozen=True)
class ChatResult:
    text: str
    usage: Usage
    model: str
    done_reason: str = "stop"  # "stop" | "length"


@runtime_checkable
class Backend(Protocol):
    """What the orchestrator needs from a model server. Implementations must be reusable across
    many calls (one loaded model plays every persona)."""

    name: str  # "embedded" | "ollama" | "openai" | "replay" | "scripted"
    model: str

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult: ...

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        """Tokens of the prompt these messages render to (an estimate where the server has no
        tokenizer endpoint)."""
        ...

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a piece of text on its own (for the per-section counts of a manifest)."""
        ...

    def context_length(self) -> int | None:
        """The model's trained window from its metadata, or None when unknown."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Slotted(Protocol):
    """A backend with parallel slots (the embedded engine): one loaded model, ``slots`` requests
    at once, each slot with its own KV cache. ``on_slot`` gives the same backend with every call
    on one slot, so a run keeps its cached prefix while others use the other slots. Use it
    through ``backends.pinned`` and ``backends.slot_count``."""

    @property
    def slots(self) -> int: ...

    def on_slot(self, slot: int) -> Backend: ...
