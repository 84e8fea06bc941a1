"""The Ollama backend through the official client, against an Ollama-compatible server that runs
the real embedded model (tests/ollama_server.py): what it sends, what it reads back, and how every
failure of the server or the network becomes one of our errors."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from personae.errors import BackendError, ModelNotFound
from personae.llm.backends import open_backend
from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.embedded import EmbeddedBackend
from personae.llm.estimate import CharTokenEstimator
from personae.llm.ollama import OllamaBackend, usage_from_final
from tests.ollama_server import DEFAULT_MODEL_NAME, OllamaTestServer

MODEL = DEFAULT_MODEL_NAME
# A long, stable system message, so a follow-up turn reuses most of its prompt from the cache.
SYSTEM = (
    "You are the Critic in a design review of a caching layer for an orders API. "
    "The API serves 1,200 requests a second at peak, p99 latency is 900 ms and the database CPU "
    "sits at 85 percent. Answer in one short sentence. Name one risk and the evidence that "
    "would settle it. Never restate what others said, and never apologise."
)
MESSAGES = (ChatMessage("system", SYSTEM), ChatMessage("user", "Should we add Redis?"))
OPTIONS = {"num_predict": 6, "seed": 7, "temperature": 0.0}


def assert_no_raw_chain(error: BaseException) -> None:
    """A traceback of ours must not show an httpx or ollama exception underneath."""
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def closed_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(num_ctx=2048)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def module_server(embedded: EmbeddedBackend) -> Iterator[OllamaTestServer]:
    with OllamaTestServer(embedded) as server:
        yield server


@pytest.fixture
def server(module_server: OllamaTestServer) -> OllamaTestServer:
    module_server.faults.clear()
    module_server.requests.clear()
    module_server.finals.clear()
    return module_server


@pytest.fixture
def backend(server: OllamaTestServer) -> Iterator[OllamaBackend]:
    b = OllamaBackend(MODEL, host=server.host, num_ctx=2048, timeout=60)
    yield b
    b.close()


# -- the real model, through the official client --------------------------------------------------
@pytest.mark.slow
def test_streamed_chat_returns_text_tokens_and_honest_usage(
    server: OllamaTestServer, backend: OllamaBackend
) -> None:
    pieces: list[str] = []
    started = time.perf_counter_ns()
    result = backend.chat(ChatRequest(MESSAGES, dict(OPTIONS)), on_token=pieces.append)
    wall_ns = time.perf_counter_ns() - started

    assert result.text and "".join(pieces) == result.text
    assert len(pieces) > 1  # streamed, not delivered at once
    assert result.model == MODEL and result.done_reason in ("stop", "length")
    usage, final = result.usage, server.finals[-1]
    assert usage.prompt_tokens == final["prompt_eval_count"] > 0
    assert usage.completion_tokens == final["eval_count"] > 0
    assert usage.evaluated_tokens == usage.prompt_tokens - final.get("prompt_eval_cached_count", 0)
    assert (usage.total_ns, usage.load_ns) == (final["total_duration"], final["load_duration"])
    assert (usage.prompt_eval_ns, usage.eval_ns) == (
        final["prompt_eval_duration"],
        final["eval_duration"],
    )
    # Nanoseconds: positive, no longer than the call took, and not a thousand times shorter.
    assert 0 < usage.prompt_eval_ns + usage.eval_ns <= usage.total_ns <= wall_ns
    assert usage.total_ns > wall_ns / 1000


@pytest.mark.slow
def test_request_body_carries_window_options_and_keep_alive(
    server: OllamaTestServer, backend: OllamaBackend
) -> None:
    backend.chat(ChatRequest(MESSAGES, {**OPTIONS, "stop": ["\n\n"], "top_k": 20}))
    body = server.chat_bodies()[-1]
    assert body["model"] == MODEL and body["stream"] is True
    assert body["messages"] == [m.to_dict() for m in MESSAGES]
    assert body["options"] == {**OPTIONS, "stop": ["\n\n"], "top_k": 20, "num_ctx": 2048}
    assert body["keep_alive"] == "10m"
    assert "format" not in body


@pytest.mark.slow
def test_shared_prefix_is_reported_as_cached(backend: OllamaBackend) -> None:
    first = backend.chat(ChatRequest(MESSAGES, dict(OPTIONS)))
    follow_up = (
        *MESSAGES,
        ChatMessage("assistant", first.text),
        ChatMessage("user", "And the rollout?"),
    )
    # The first measured prompt calibrated the estimator: estimates now track the real count.
    assert abs(backend.count_tokens(MESSAGES) - first.usage.prompt_tokens) <= 2
    second = backend.chat(ChatRequest(follow_up, dict(OPTIONS)))
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert 0 < second.usage.evaluated_tokens < second.usage.prompt_tokens
    assert second.usage.cached_tokens >= first.usage.prompt_tokens // 2


@pytest.mark.slow
def test_old_ollama_counting_only_evaluated_tokens_is_read_as_such(
    embedded: EmbeddedBackend,
) -> None:
    with OllamaTestServer(embedded, usage_style="evaluated") as old:
        b = OllamaBackend(MODEL, host=old.host, num_ctx=2048)
        first = b.chat(ChatRequest(MESSAGES, dict(OPTIONS)))
        follow_up = (*MESSAGES, ChatMessage("assistant", first.text), ChatMessage("user", "Why?"))
        second = b.chat(ChatRequest(follow_up, dict(OPTIONS)))
    assert second.usage.evaluated_tokens == old.finals[-1]["prompt_eval_count"]
    assert second.usage.prompt_tokens > 2 * second.usage.evaluated_tokens  # the estimate


@pytest.mark.slow
def test_json_schema_format_constrains_the_reply(
    server: OllamaTestServer, backend: OllamaBackend
) -> None:
    schema = {
        "type": "object",
        "properties": {"next": {"enum": ["A", "B"]}},
        "required": ["next"],
    }
    messages = (ChatMessage("user", 'Who speaks next, A or B? Reply as JSON {"next": ...}.'),)
    result = backend.chat(ChatRequest(messages, {"num_predict": 24, "temperature": 0}, schema))
    assert server.chat_bodies()[-1]["format"] == schema
    reply = json.loads(result.text)
    assert set(reply) == {"next"} and reply["next"] in ("A", "B")


@pytest.mark.slow
def test_embed_returns_vectors_of_the_model_dimension(
    server: OllamaTestServer, embedded: EmbeddedBackend
) -> None:
    reply = ollama.Client(host=server.host).embed(model=MODEL, input=["caching", "rollout plan"])
    width = embedded.engine.n_embd
    assert width == 576  # SmolLM2-135M
    assert [len(v) for v in reply.embeddings] == [width, width]
    assert reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert reply.embeddings[0] != reply.embeddings[1]


@pytest.mark.slow
def test_ndjson_stream_has_ollama_shape(server: OllamaTestServer) -> None:
    body = {"model": MODEL, "messages": [m.to_dict() for m in MESSAGES], "options": OPTIONS}
    with httpx.stream("POST", f"{server.host}/api/chat", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *parts, last = lines
    assert parts and all(p["done"] is False for p in parts)
    assert all(p["message"]["role"] == "assistant" for p in lines)
    assert all(isinstance(p["message"]["content"], str) and p["created_at"] for p in lines)
    assert last["done"] is True and last["done_reason"] in ("stop", "length")
    for field in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert type(last[field]) is int and last[field] > 0, field


@pytest.mark.slow
def test_unstreamed_chat_is_one_json_object(server: OllamaTestServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 2},
    }
    reply = httpx.post(f"{server.host}/api/chat", json=body, timeout=60).json()
    assert reply["done"] is True and reply["message"]["content"]
    assert reply["eval_count"] <= 2


# -- metadata -----------------------------------------------------------------------------------
def test_context_length_and_window_come_from_api_show(server: OllamaTestServer) -> None:
    b = OllamaBackend(MODEL, host=server.host)
    assert b.context_length() == 8192
    assert b.num_ctx == 8192  # the trained window, within the 8192 cap
    assert b.context_length() == 8192
    assert [r.path for r in server.requests].count("/api/show") == 1  # cached
    assert OllamaBackend(MODEL, host=server.host, num_ctx=1024).num_ctx == 1024


def test_window_defaults_when_the_model_does_not_say(monkeypatch: pytest.MonkeyPatch) -> None:
    b = OllamaBackend(MODEL, host=f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(b, "_model_info", lambda: {"general.architecture": "llama"})
    assert b.context_length() is None and b.num_ctx == 4096


def test_list_models_and_has_model(server: OllamaTestServer) -> None:
    b = OllamaBackend(MODEL, host=server.host)
    assert b.list_models() == [MODEL]
    assert b.has_model(MODEL) and not b.has_model("llama3.2")


def test_show_answers_like_ollama(server: OllamaTestServer) -> None:
    shown = ollama.Client(host=server.host).show(MODEL)
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.details and shown.details.family == "llama"
    assert shown.template and shown.capabilities == ["completion"]


# -- failures become our errors -----------------------------------------------------------------
def test_unknown_model_raises_model_not_found_with_the_pull_command(
    server: OllamaTestServer,
) -> None:
    b = OllamaBackend("llama3.2:3b", host=server.host, num_ctx=2048)
    with pytest.raises(ModelNotFound, match=r"ollama pull llama3\.2:3b") as info:
        b.chat(ChatRequest(MESSAGES, dict(OPTIONS)))
    assert info.value.status == 404 and not info.value.transient
    with pytest.raises(ModelNotFound):
        b.context_length()


def test_server_down_is_transient_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    b = OllamaBackend(MODEL, host=host, num_ctx=2048)
    for call in (lambda: b.chat(ChatRequest(MESSAGES, dict(OPTIONS))), b.list_models):
        with pytest.raises(BackendError) as info:
            call()
        error = info.value
        assert error.transient and type(error) is BackendError
        assert host in str(error) and "ollama serve" in str(error)
        assert "--backend embedded" in str(error)
        assert_no_raw_chain(error)


@pytest.mark.parametrize(
    ("kind", "transient", "status", "words"),
    [
        ("500", True, 500, "answered 500"),
        ("404", False, 404, "ollama pull"),
        ("cut", True, None, "cut off"),
        ("truncate", True, None, "cut off"),
        ("refuse", True, None, "cut off"),
    ],
)
def test_injected_faults_map_to_backend_errors(
    server: OllamaTestServer,
    backend: OllamaBackend,
    kind: str,
    transient: bool,
    status: int | None,
    words: str,
) -> None:
    server.fail_next(kind)
    with pytest.raises(BackendError, match=words) as info:
        backend.chat(ChatRequest(MESSAGES, dict(OPTIONS)))
    assert info.value.transient is transient and info.value.status == status
    assert_no_raw_chain(info.value)
    assert len(server.faults) == 0 and server.finals == []


def test_a_stalled_server_times_out_as_transient(server: OllamaTestServer) -> None:
    b = OllamaBackend(MODEL, host=server.host, num_ctx=2048, timeout=0.5)
    server.fail_next("stall")
    with pytest.raises(BackendError, match=r"did not answer within 0\.5 s") as info:
        b.chat(ChatRequest(MESSAGES, dict(OPTIONS)))
    assert info.value.transient
    assert_no_raw_chain(info.value)


def test_faults_apply_to_the_next_n_chats_only(server: OllamaTestServer) -> None:
    server.fail_next("500", count=2)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False}
    statuses = [httpx.post(f"{server.host}/api/chat", json=body).status_code for _ in range(2)]
    assert statuses == [500, 500] and len(server.faults) == 0
    assert len(server.chat_bodies()) == 2
    with pytest.raises(ValueError):
        server.fail_next("teapot")


def test_raw_errors_have_ollama_shape(server: OllamaTestServer) -> None:
    missing = httpx.post(f"{server.host}/api/chat", json={"model": "nope", "messages": []})
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}
    bad = httpx.post(f"{server.host}/api/chat", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    assert server.requests[-1].body == "{not json"
    assert httpx.get(f"{server.host}/api/version").json()["version"]


# -- choosing the backend -----------------------------------------------------------------------
def test_auto_picks_ollama_when_it_answers(
    server: OllamaTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.host)
    chosen = open_backend("auto", None)
    assert isinstance(chosen, OllamaBackend) and chosen.host == server.host


def test_auto_falls_back_to_embedded_when_ollama_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, ...]] = []

    class Stub:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(args)

    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")
    monkeypatch.setattr("personae.llm.embedded.EmbeddedBackend", Stub)
    assert isinstance(open_backend("auto", None), Stub) and made == [(None,)]


# -- reading usage, estimating tokens (no server) -----------------------------------------------
def test_usage_with_a_cached_count_is_exact() -> None:
    usage, measured = usage_from_final(
        {"prompt_eval_count": 120, "prompt_eval_cached_count": 100, "eval_count": 5}, 90
    )
    assert (usage.prompt_tokens, usage.evaluated_tokens, usage.cached_tokens) == (120, 20, 100)
    assert measured and usage.completion_tokens == 5


def test_usage_without_a_cached_count_claims_no_reuse() -> None:
    usage, measured = usage_from_final({"prompt_eval_count": 120, "eval_count": 5}, 100)
    assert (usage.prompt_tokens, usage.evaluated_tokens) == (120, 120) and measured


@pytest.mark.parametrize("final", [{}, {"prompt_eval_count": 0}, {"prompt_eval_count": 30}])
def test_usage_from_old_servers_counting_only_evaluated_tokens(final: dict[str, Any]) -> None:
    usage, measured = usage_from_final({**final, "eval_count": 5}, 100)
    assert usage.prompt_tokens == 100 and not measured
    assert usage.evaluated_tokens == final.get("prompt_eval_count", 0)


def test_estimator_calibrates_from_measured_prompts() -> None:
    estimator = CharTokenEstimator()
    messages = (ChatMessage("user", "x" * 400),)
    assert estimator.estimate(messages) == 3 + 4 + 100
    estimator.calibrate(messages, 3 + 4 + 200)  # this model packs 2 characters a token
    assert estimator.chars_per_token == 2.0 and estimator.estimate_text("abcd") == 2
    estimator.calibrate((ChatMessage("user", "short"),), 50)  # template-dominated: ignored
    assert estimator.chars_per_token == 2.0
    assert estimator.estimate_text("") == 0
