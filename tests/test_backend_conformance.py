"""One suite for every backend: what the orchestrator relies on, asked of each the same way.

A new backend is "implement the Backend protocol, add a factory to BACKENDS". The real ones run
on the real model: embedded in-process, Ollama through ``tests/ollama_server.py`` (the official
client over HTTP), OpenAI-compatible through ``personae model serve`` (a subprocess); the
scripted backend runs in the fast tier. (Replay is checked against its recordings in
tests/test_replay.py: it answers only the requests it holds.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from personae.errors import BackendError
from personae.llm.base import Backend, ChatMessage, ChatRequest

MESSAGES = (ChatMessage("system", "You are terse."), ChatMessage("user", "Name one color."))
SCHEMA = {
    "type": "object",
    "properties": {"color": {"type": "string", "maxLength": 20}},
    "required": ["color"],
}


class Stop(Exception):
    """Raised from ``on_token`` to leave a call early (as Ctrl-C does)."""


def _scripted(tmp: Path) -> Iterator[Backend]:
    from personae.llm.scripted import ScriptedBackend

    yield ScriptedBackend(default="Blue is one color, and a calm one.")


def _embedded(tmp: Path) -> Iterator[Backend]:
    from personae.llm.embedded import EmbeddedBackend

    backend = EmbeddedBackend(num_ctx=1024)
    yield backend
    backend.close()


def _ollama(tmp: Path) -> Iterator[Backend]:
    from personae.llm.ollama import OllamaBackend
    from tests.ollama_server import DEFAULT_MODEL_NAME, serve_ollama

    with serve_ollama() as server:
        backend = OllamaBackend(DEFAULT_MODEL_NAME, host=server.host, num_ctx=1024)
        yield backend
        backend.close()


def _openai_serve(tmp: Path) -> Iterator[Backend]:
    from personae.llm.embedded import bundled_model_path
    from personae.llm.openai_compat import OpenAIBackend
    from tests.openai_server import model_server

    model = bundled_model_path()
    assert model is not None
    with model_server(model, tmp, n_ctx=1024) as server:
        backend = OpenAIBackend(model.stem, base_url=server.base_url)
        yield backend
        backend.close()


BACKENDS: dict[str, Callable[[Path], Iterator[Backend]]] = {
    "scripted": _scripted,
    "embedded": _embedded,
    "ollama": _ollama,
    "openai-model-serve": _openai_serve,
}
REAL = {"embedded", "ollama", "openai-model-serve"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=[pytest.mark.slow] if n in REAL else []) for n in BACKENDS],
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    factory = BACKENDS[request.param]
    yield from factory(tmp_path_factory.mktemp(request.param))


def options(**more: Any) -> dict[str, Any]:
    return {"num_predict": 8, "temperature": 0, "seed": 7, **more}


def test_chat_streams_every_piece_and_reports_usage(backend: Backend) -> None:
    pieces: list[str] = []
    result = backend.chat(ChatRequest(MESSAGES, options()), on_token=pieces.append)
    assert result.text and "".join(pieces) == result.text
    usage = result.usage
    assert usage.prompt_tokens > 0 and 0 <= usage.evaluated_tokens <= usage.prompt_tokens
    assert 0 < usage.completion_tokens <= (8 if backend.name != "scripted" else 100)
    assert result.done_reason in {"stop", "length"}
    assert backend.count_tokens(MESSAGES) > 0 and backend.count_text_tokens("one two three") > 0


def test_structured_output_matches_the_schema(backend: Backend) -> None:
    result = backend.chat(ChatRequest(MESSAGES, options(num_predict=40), schema=SCHEMA))
    value = json.loads(result.text)
    assert isinstance(value, dict)
    if backend.name != "scripted":  # the scripted backend wraps any text as {"text": ...}
        assert isinstance(value["color"], str)


def test_the_same_seed_gives_the_same_reply(backend: Backend) -> None:
    hot = options(temperature=1.0, num_predict=12)
    first = backend.chat(ChatRequest(MESSAGES, hot)).text
    second = backend.chat(ChatRequest(MESSAGES, hot)).text
    assert first == second


def test_num_predict_caps_the_reply(backend: Backend) -> None:
    if backend.name == "scripted":
        pytest.skip("the scripted backend answers its script, whatever the cap")
    long = (ChatMessage("user", "Write a long story about a cache."),)
    result = backend.chat(ChatRequest(long, options(num_predict=5)))
    assert result.usage.completion_tokens <= 5 and result.done_reason == "length"


def test_a_prompt_past_the_window_is_a_backend_error(backend: Backend) -> None:
    """num_ctx is honoured: a prompt longer than the window fails, never silently truncated."""
    if backend.name == "scripted":
        pytest.skip("the scripted backend has no window to honour")
    huge = (ChatMessage("user", "cache " * 3000),)
    with pytest.raises(BackendError):
        backend.chat(ChatRequest(huge, options(num_ctx=1024)))


def test_leaving_mid_stream_cancels_and_the_backend_still_answers(backend: Backend) -> None:
    seen: list[str] = []

    def stop_after_two(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            raise Stop

    long = (ChatMessage("user", "Write a long story about a cache."),)
    with pytest.raises(Stop):
        backend.chat(ChatRequest(long, options(num_predict=60)), on_token=stop_after_two)
    assert len(seen) == 2
    after = backend.chat(ChatRequest(MESSAGES, options()))
    assert after.text


def test_an_unreachable_server_is_a_backend_error() -> None:
    from personae.llm.ollama import OllamaBackend
    from personae.llm.openai_compat import OpenAIBackend

    for made in (
        OllamaBackend("m", host="http://127.0.0.1:9", num_ctx=512),
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1"),
    ):
        with pytest.raises(BackendError):
            made.chat(ChatRequest(MESSAGES, options()))
        made.close()


def test_backends_without_slots_are_pinned_unchanged() -> None:
    from personae.llm.backends import pinned, slot_count
    from personae.llm.retry import RetryingBackend
    from personae.llm.scripted import ScriptedBackend

    scripted = ScriptedBackend()
    retrying = RetryingBackend(scripted)
    assert slot_count(scripted) == slot_count(retrying) == 1
    assert pinned(scripted, 3) is scripted and pinned(retrying, 0) is retrying


@pytest.mark.slow
def test_pinned_slots_keep_their_own_cache_from_several_threads() -> None:
    """Each slot its own KV cache: a run pinned to a slot re-reads only its new tokens, whatever
    another run does on another slot at the same time."""
    import threading

    from personae.llm.backends import pinned, slot_count
    from personae.llm.embedded import EmbeddedBackend
    from personae.llm.retry import RetryingBackend

    backend = EmbeddedBackend(num_ctx=512, slots=2)
    try:
        assert slot_count(backend) == slot_count(RetryingBackend(backend)) == 2 and backend.num_ctx == 512
        prompts = [(ChatMessage("user", "Name one color."),), (ChatMessage("user", "Name one fruit, then a tree."),)]
        evaluated: dict[int, list[int]] = {0: [], 1: []}

        def twice(slot: int) -> None:
            on_slot = pinned(RetryingBackend(backend), slot)
            for _ in range(2):
                reply = on_slot.chat(ChatRequest(prompts[slot], options(num_predict=3)))
                evaluated[slot].append(reply.usage.evaluated_tokens)

        threads = [threading.Thread(target=twice, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for slot in (0, 1):
            first, again = evaluated[slot]
            assert first == backend.count_tokens(prompts[slot]) and again == 1, evaluated
        with pytest.raises(ValueError):
            pinned(backend, 2)
    finally:
        backend.close()
