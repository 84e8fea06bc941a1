"""The ``openai`` backend: any server that speaks the OpenAI chat-completions API.

LM Studio, vLLM, llama.cpp's ``llama-server``, llama-cpp-python's server and OpenAI itself all take
the same request, so one backend built on the official ``openai`` client covers them. It lives in
the optional extra ``personae[openai]``; nothing imports it unless ``--backend openai`` is chosen.

Usage is read from the server, never guessed when the server says it:

- A reply that is not streamed (no one listens to tokens, e.g. ``personae run --quiet``) always
  carries ``usage`` in the OpenAI API.
- A streamed reply asks for it with ``stream_options={"include_usage": True}``; the server then sends
  a last chunk with ``usage``. Servers that ignore that option (llama-cpp-python 0.3 does) leave us
  without numbers: completion tokens are then the count of content chunks (one token each on
  llama.cpp-based servers) and prompt tokens a character estimate calibrated on the exact counts
  of earlier replies.
- ``evaluated_tokens`` = ``prompt_tokens - usage.prompt_tokens_details.cached_tokens`` when the
  server reports cached tokens (OpenAI, vLLM with ``--enable-prompt-tokens-details``, recent
  llama.cpp ``llama-server``). When it does not (llama-cpp-python, LM Studio), the reuse is invisible
  to us and evaluated = prompt: we never claim savings we cannot see. The server may well have
  reused its cache; its own log then tells (``benchmarks/peers.py`` reads it).

Options keep Ollama's names in scenarios and are translated here: ``num_predict`` → ``max_tokens``,
``repeat_penalty``/``top_k``/``min_p`` go in the request body as llama.cpp-based servers and vLLM
read them (OpenAI itself rejects them, so leave them unset there). ``num_ctx`` is not sent: the
server decides its window; Personae only budgets its prompts against it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from personae.errors import BackendError, ModelNotFound, UserError
from personae.llm.base import (
    ChatRequest,
    ChatResult,
    TokenCallback,
    Usage,
    server_text,
)
from personae.llm.estimate import CharTokenEstimator, RemoteModel

DEFAULT_API_KEY = "sk-no-key"  # local servers ignore the key, but the client insists on one
INSTALL_HINT = "The openai backend needs the openai client: pip install 'personae[openai]'."
# Sampling options outside the OpenAI spec that llama.cpp-based servers and vLLM accept.
EXTRA_SAMPLING = {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repeat_penalty"}
TRANSIENT_STATUS = frozenset({408, 409, 429})


def default_base_url() -> str | None:
    return os.environ.get("OPENAI_BASE_URL", "").strip() or None


def open_openai(
    model: str | None, *, base_url: str | None = None, num_ctx: int | None = None
) -> OpenAIBackend:
    """The backend for ``--backend openai``. Without ``--model``, the server's only model is used
    (llama-cpp-python, LM Studio and vLLM usually serve one); a choice of several is the user's."""
    url = base_url or default_base_url()
    if not url:
        raise UserError(
            "The openai backend needs the server's address: pass --base-url "
            "http://127.0.0.1:8000/v1 (or set OPENAI_BASE_URL)."
        )
    backend = OpenAIBackend(model or "", base_url=url, num_ctx=num_ctx)
    if not model:
        names = backend.list_models()
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            backend.close()
            raise UserError(
                f"Name the model to use with --model: the server at {url} serves {listed}."
            )
        backend.model = names[0]
    return backend


def usage_from(reported: Any, *, prompt_fallback: int, completion_fallback: int) -> tuple[Usage, bool]:
    """Our Usage from the server's ``usage`` object (or None), and whether it was measured.

    ``reported`` is the ``openai`` client's ``CompletionUsage`` (or a plain mapping). See the module
    docstring for how evaluated tokens follow from ``prompt_tokens_details.cached_tokens``.
    """
    if reported is None:
        return (
            Usage(
                prompt_tokens=prompt_fallback,
                evaluated_tokens=prompt_fallback,
                completion_tokens=completion_fallback,
            ),
            False,
        )
    prompt = int(_field(reported, "prompt_tokens") or 0)
    completion = int(_field(reported, "completion_tokens") or 0)
    details = _field(reported, "prompt_tokens_details")
    cached = _field(details, "cached_tokens") if details is not None else None
    evaluated = prompt - min(prompt, int(cached)) if cached is not None else prompt
    return Usage(prompt_tokens=prompt, evaluated_tokens=evaluated, completion_tokens=completion), True


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class OpenAIBackend(RemoteModel):
    """An OpenAI-compatible chat-completions server behind the Backend protocol."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        num_ctx: int | None = None,
        timeout: float = 300,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UserError(INSTALL_HINT) from exc
        self._openai = openai
        self.model = model
        self.base_url = base_url or default_base_url() or "https://api.openai.com/v1"
        self.timeout = timeout
        self._num_ctx = num_ctx
        self._model_entry: Mapping[str, Any] | None = None
        self._estimator = CharTokenEstimator()
        # OpenAI's `json_schema` response format, or llama.cpp's `json_object` + `schema` once the
        # server has refused the first (llama-cpp-python's server answers it with a 500).
        self._schema_format = "json_schema"
        key = api_key or os.environ.get("OPENAI_API_KEY", "").strip() or DEFAULT_API_KEY
        # No silent retries: a failed turn is recorded and the user decides (resume).
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0
        )

    # -- protocol ---------------------------------------------------------------------------
    def context_length(self) -> int | None:
        """The window the server reports in ``/models``, where it reports one: vLLM's
        ``max_model_len``, LM Studio's ``max_context_length``, llama.cpp's ``meta.n_ctx_train``."""
        entry = self._entry()
        for value in (
            entry.get("max_model_len"),
            entry.get("max_context_length"),
            entry.get("context_length"),
            (entry.get("meta") or {}).get("n_ctx_train") if isinstance(entry.get("meta"), Mapping) else None,
        ):
            if isinstance(value, int) and value > 0:
                return value
        return None

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        import openai

        started = time.perf_counter_ns()
        with self._translated_errors():
            try:
                text, done_reason, reported, model, chunks = self._send(self._body(request), on_token)
            except openai.APIStatusError as exc:
                refused = exc.status_code in (400, 422, 500) and request.schema is not None
                if not refused or self._schema_format != "json_schema":
                    raise
                self._schema_format = "json_object"  # the llama.cpp server's own shape
                text, done_reason, reported, model, chunks = self._send(self._body(request), on_token)
        ended = time.perf_counter_ns()
        usage, _measured = usage_from(
            reported,
            prompt_fallback=self._estimator.estimate(request.messages),
            completion_fallback=chunks or self._estimator.estimate_text(text),
        )
        # Calibrated on what the call row will store, measured or not (see CharTokenEstimator).
        self._estimator.calibrate(request.messages, usage.prompt_tokens)
        usage = Usage(
            prompt_tokens=usage.prompt_tokens,
            evaluated_tokens=usage.evaluated_tokens,
            completion_tokens=usage.completion_tokens,
            total_ns=ended - started,
        )
        return ChatResult(
            text=text,
            usage=usage,
            model=model or self.model,
            done_reason="length" if done_reason == "length" else "stop",
        )

    def close(self) -> None:
        self._client.close()

    def list_models(self) -> list[str]:
        """Ids of the models the server lists (``GET /models``)."""
        with self._translated_errors():
            return [m.id for m in self._client.models.list().data]

    # -- internals ----------------------------------------------------------------------------
    def _body(self, request: ChatRequest) -> dict[str, Any]:
        options = {k: v for k, v in request.options.items() if v is not None}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
        }
        if "num_predict" in options:
            body["max_tokens"] = int(options["num_predict"])
        for name in ("temperature", "top_p", "seed"):
            if name in options:
                body[name] = options[name]
        if options.get("stop"):
            body["stop"] = list(options["stop"])
        extra = {EXTRA_SAMPLING[k]: options[k] for k in EXTRA_SAMPLING if k in options}
        if extra:
            body["extra_body"] = extra
        if request.schema is not None and self._schema_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        elif request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.schema, "strict": True},
            }
        return body

    def _send(
        self, body: dict[str, Any], on_token: TokenCallback | None
    ) -> tuple[str, str | None, Any, str | None, int]:
        return self._complete(body) if on_token is None else self._stream(body, on_token)

    def _complete(self, body: dict[str, Any]) -> tuple[str, str | None, Any, str | None, int]:
        response = self._client.chat.completions.create(**body)
        if not response.choices:
            raise BackendError(
                f"The server at {self.base_url} answered without a choice for model {self.model}.",
                transient=True,
            )
        choice = response.choices[0]
        return (
            server_text(choice.message.content or ""),
            choice.finish_reason,
            response.usage,
            response.model,
            0,
        )

    def _stream(
        self, body: dict[str, Any], on_token: TokenCallback
    ) -> tuple[str, str | None, Any, str | None, int]:
        pieces: list[str] = []
        done_reason: str | None = None
        reported: Any = None
        model: str | None = None
        stream = self._client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        try:
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    reported = chunk.usage
                for choice in chunk.choices:
                    content = server_text(choice.delta.content or "") if choice.delta else None
                    if content:
                        pieces.append(content)
                        on_token(content)
                    if choice.finish_reason:
                        done_reason = choice.finish_reason
        finally:
            stream.close()
        if done_reason is None:
            raise BackendError(
                f"The server at {self.base_url} cut off the reply of {self.model} before it "
                "finished (no finish_reason). It may have crashed or been restarted; try again.",
                transient=True,
            )
        return "".join(pieces), done_reason, reported, model, len(pieces)

    def _entry(self) -> Mapping[str, Any]:
        """This model's entry in ``GET /models`` (empty when the server does not list it)."""
        if self._model_entry is None:
            self._model_entry = {}
            try:
                with self._translated_errors():
                    for model in self._client.models.list().data:
                        if model.id == self.model:
                            self._model_entry = model.model_dump()
                            break
            except BackendError:
                pass  # the window is a nicety; chat() reports an unreachable server clearly
        return self._model_entry

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """Every failure of the server or the network becomes one of our errors, with the fix."""
        openai = self._openai
        try:
            yield
        except openai.APITimeoutError:
            raise BackendError(
                f"The server at {self.base_url} did not answer within {self.timeout:g} s. "
                "It may be loading the model or overloaded; try again.",
                transient=True,
            ) from None
        except openai.APIConnectionError:
            raise BackendError(
                f"No OpenAI-compatible server answers at {self.base_url}. Start it (for example "
                "`personae model serve`, llama.cpp's llama-server, LM Studio's server, or vLLM), or "
                "point --base-url / OPENAI_BASE_URL at where it runs.",
                transient=True,
            ) from None
        except openai.AuthenticationError as exc:
            raise BackendError(
                f"The server at {self.base_url} refused the API key ({_message(exc)}). "
                "Set OPENAI_API_KEY to a key it accepts.",
                status=exc.status_code,
            ) from None
        except openai.NotFoundError as exc:
            raise ModelNotFound(
                f"The server at {self.base_url} does not know the model '{self.model}' "
                f"({_message(exc)}). List its models with: curl {self.base_url}/models",
                status=404,
            ) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise BackendError(
                f"The server at {self.base_url} answered {status}: {_message(exc)}",
                transient=status >= 500 or status in TRANSIENT_STATUS,
                status=status,
            ) from None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        detail = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(detail, Mapping):
            detail = detail.get("message")
        if detail:
            return str(detail)
    return str(getattr(exc, "message", None) or exc)
