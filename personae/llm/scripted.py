"""A backend that answers from a script: for logic tests and overhead benchmarks.

Like simonw/llm's MockModel, it lets tests say what "the model" replies and then check everything
the framework did around it. It imitates a server's prefix cache with a whitespace tokenizer over a
simple chat rendering, so layout tests can compare evaluated tokens without a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from personae.llm.base import ChatMessage, ChatRequest, ChatResult, TokenCallback, Usage

Reply = str | Callable[[ChatRequest], str]


def render(messages: Iterable[ChatMessage]) -> str:
    return "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages) + "<|assistant|>\n"


def tokens(text: str) -> list[str]:
    return text.split()


class ScriptedBackend:
    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        default: Reply = "ok",
        model: str = "scripted",
        num_ctx: int = 4096,
    ) -> None:
        self.queue: list[Reply] = list(replies)
        self.default = default
        self.model = model
        self.num_ctx = num_ctx
        self.requests: list[ChatRequest] = []
        self._cached: list[str] = []

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        self.requests.append(request)
        reply = self.queue.pop(0) if self.queue else self.default
        text = reply(request) if callable(reply) else reply
        if request.schema is not None and not _is_json(text):
            text = json.dumps({"text": text})
        prompt = tokens(render(request.messages))
        reused = 0
        for a, b in zip(self._cached, prompt[:-1]):
            if a != b:
                break
            reused += 1
        completion = tokens(text)
        self._cached = prompt + completion
        if on_token:
            for piece in re.findall(r"\s*\S+\s*|\s+", text):
                on_token(piece)
        usage = Usage(
            prompt_tokens=len(prompt),
            evaluated_tokens=len(prompt) - reused,
            completion_tokens=len(completion),
        )
        return ChatResult(text=text, usage=usage, model=self.model)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return len(tokens(render(messages)))

    def count_text_tokens(self, text: str) -> int:
        return len(tokens(text))

    def context_length(self) -> int | None:
        return self.num_ctx

    def close(self) -> None:
        pass


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


