"""A model server is untrusted input (issue 21, item 6): every reply is bounded on the client
(tokens, bytes, total time), every chunk's shape is checked, absurd token counts are cleaned, and
``Retry-After`` is honoured up to a cap. Against small loopback servers that misbehave on purpose
(``tests/misbehaving_server.py``); a run that meets one ends ``failed`` with the resume hint."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personae.errors import BackendError
from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.bounds import MAX_COUNT, count
from personae.llm.ollama import OllamaBackend
from personae.llm.retry import RETRY_AFTER_CAP, RetryingBackend, RetryPolicy, retry_after_seconds
from tests.conftest import personae_cmd
from tests.durable_support import scenario_text, write_scenario
from tests.misbehaving_server import (
    MisbehavingServer,
    endless,
    ollama_chunk,
    ollama_final,
    openai_chunk,
)

ASK = ChatRequest((ChatMessage("user", "Say something."),), {"num_predict": 8})


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def ollama(server: MisbehavingServer, **kwargs: float) -> OllamaBackend:
    return OllamaBackend("m", host=server.host, num_ctx=2048, timeout=10, **kwargs)


def openai(server: MisbehavingServer, **kwargs: float):  # type: ignore[no-untyped-def]
    from personae.llm.openai_compat import OpenAIBackend

    return OpenAIBackend("m", base_url=f"{server.host}/v1", num_ctx=2048, timeout=10, **kwargs)


# -- counts -----------------------------------------------------------------------------------


def test_counts_that_are_no_whole_non_negative_numbers_are_not_reported() -> None:
    assert [count(v) for v in (5, 5.0, 0)] == [5, 5, 0]
    assert [count(v) for v in (-1, "12", None, True, float("nan"), float("inf"), 2.5, [3])] == [None] * 8
    assert count(10**40) == MAX_COUNT


def test_retry_after_is_read_as_seconds_or_a_date_and_nothing_else() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    assert [retry_after_seconds(v) for v in ("nan", "soon", "", None, "inf")] == [None] * 5
    assert retry_after_seconds("-5") == 0.0


# -- Ollama -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("line", [
    "[1, 2]", '"text"', "42", json.dumps({"message": "hi", "done": False}),
    json.dumps({"message": {"content": 5}, "done": False}),
    json.dumps({"message": {"content": "x"}, "done": "yes"}),
])
def test_ollama_chunks_of_the_wrong_shape_are_a_clear_error(server: MisbehavingServer, line: str) -> None:
    server.reply = [ollama_chunk("Hello"), line, ollama_final()]
    with pytest.raises(BackendError, match="wrong shape") as info:
        ollama(server).chat(ASK)
    assert not info.value.transient


@pytest.mark.slow
def test_ollama_reply_far_longer_than_num_predict_is_cut(server: MisbehavingServer) -> None:
    server.reply = endless(ollama_chunk("word "), limit=5000)
    result = ollama(server).chat(ASK)
    assert result.done_reason == "length"
    assert result.text.count("word") <= 9 and result.usage.completion_tokens <= 9


@pytest.mark.slow
def test_ollama_one_huge_piece_is_cut_to_the_byte_bound(server: MisbehavingServer) -> None:
    server.reply = [ollama_chunk("x" * 200_000), ollama_final()]
    result = ollama(server).chat(ASK)
    assert result.done_reason == "length" and len(result.text) <= 8 * 64


@pytest.mark.slow
def test_ollama_stream_of_empty_chunks_without_end_is_abandoned(server: MisbehavingServer) -> None:
    server.reply = endless(ollama_chunk(""))
    with pytest.raises(BackendError, match="more than .* stream chunks"):
        ollama(server).chat(ASK)


@pytest.mark.slow
def test_ollama_stream_that_never_ends_is_bounded_in_time(server: MisbehavingServer) -> None:
    server.reply = endless(ollama_chunk(""), pause=0.2)
    started = time.monotonic()
    with pytest.raises(BackendError, match="still streaming"):
        ollama(server, max_seconds=1.0).chat(ASK)
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_ollama_line_without_end_is_refused(server: MisbehavingServer) -> None:
    # A 2 MiB line: no chat chunk is that long, and reading it whole is what a bound prevents.
    server.reply = [ollama_chunk("a"), '{"message": {"content": "' + "y" * (2 * 1024 * 1024) + '"}}']
    with pytest.raises(BackendError, match="longer than"):
        ollama(server).chat(ASK)


@pytest.mark.slow
def test_ollama_absurd_counts_are_cleaned(server: MisbehavingServer) -> None:
    server.reply = [ollama_chunk("Hi."), ollama_final(
        prompt_eval_count=10**30, eval_count=-4, total_duration="soon", load_duration=1e300,
        prompt_eval_duration=float("nan"), eval_duration=[1],
    )]
    usage = ollama(server).chat(ASK).usage
    assert usage.prompt_tokens == MAX_COUNT and usage.completion_tokens == 0
    assert (usage.total_ns, usage.prompt_eval_ns, usage.eval_ns) == (0, 0, 0)
    assert 0 <= usage.load_ns < 2**63


@pytest.mark.slow
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_up_to_a_cap(server: MisbehavingServer, status: int) -> None:
    waits: list[float] = []
    server.reply = (status, {"Retry-After": "7"}, '{"error": "busy"}')
    backend = RetryingBackend(ollama(server), RetryPolicy(2, 0.01, 0.02), sleep=waits.append)
    with pytest.raises(BackendError, match="Gave up after 2 attempts"):
        backend.chat(ASK)
    assert waits == [7.0]
    server.reply = (status, {"Retry-After": "100000"}, '{"error": "busy"}')
    waits.clear()
    with pytest.raises(BackendError):
        backend.chat(ASK)
    assert waits == [RETRY_AFTER_CAP]


# -- OpenAI-compatible -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("line", [
    json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": "x"}),
    openai_chunk(None, None).replace('"content": null', '"content": 7'),
    openai_chunk("a", None).replace('"finish_reason": null', '"finish_reason": 3'),
    "[1, 2]",
])
def test_openai_chunks_of_the_wrong_shape_are_a_clear_error(server: MisbehavingServer, line: str) -> None:
    server.reply = [openai_chunk("Hello"), line, openai_chunk(None, "stop"), "[DONE]"]
    with pytest.raises(BackendError, match="wrong shape"):
        openai(server).chat(ASK, on_token=lambda _t: None)


@pytest.mark.slow
def test_openai_reply_far_longer_than_num_predict_is_cut(server: MisbehavingServer) -> None:
    server.reply = endless(openai_chunk("word "), limit=5000)
    result = openai(server).chat(ASK, on_token=lambda _t: None)
    assert result.done_reason == "length" and result.text.count("word") <= 9


@pytest.mark.slow
def test_openai_absurd_usage_is_cleaned(server: MisbehavingServer) -> None:
    usage = {"prompt_tokens": 10**30, "completion_tokens": -3, "total_tokens": "x",
             "prompt_tokens_details": {"cached_tokens": "lots"}}
    server.reply = [openai_chunk("Hi."), openai_chunk(None, "stop"),
                    json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                "model": "m", "choices": [], "usage": usage}), "[DONE]"]
    result = openai(server).chat(ASK, on_token=lambda _t: None)
    assert result.usage.prompt_tokens == MAX_COUNT and result.usage.evaluated_tokens == MAX_COUNT
    assert result.usage.completion_tokens == 1  # not reported: the count of content chunks


@pytest.mark.slow
def test_openai_retry_after_is_read(server: MisbehavingServer) -> None:
    server.reply = (429, {"Retry-After": "3"}, '{"error": {"message": "slow down"}}')
    with pytest.raises(BackendError) as info:
        openai(server).chat(ASK)
    assert info.value.retry_after == 3.0 and info.value.transient


# -- a run meets such a server -----------------------------------------------------------------


@pytest.mark.slow
def test_a_run_against_a_server_of_the_wrong_shape_fails_with_the_resume_hint(
    server: MisbehavingServer, tmp_path: Path, cli_env: dict[str, str], isolated_env: Path
) -> None:
    server.reply = [ollama_chunk("Hello"), json.dumps({"message": ["not", "an", "object"]}), ollama_final()]
    path = write_scenario(tmp_path / "project", scenario_text(
        "memory: {num_ctx: 1024, collapse: null}\ntermination: {max_turns: 2}\n", num_predict=4))
    env = {**cli_env, "OLLAMA_HOST": server.host, "PERSONAE_RETRIES": "1"}
    done = subprocess.run(personae_cmd("run", str(path), "--backend", "ollama", "--model", "m", "-q"),
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "wrong shape" in done.stderr and "personae resume 1" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    with sqlite3.connect(isolated_env) as connection:
        assert connection.execute("select status from runs where id = 1").fetchone() == ("failed",)
