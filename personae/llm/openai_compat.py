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
from personae.llm.bounds import ReplyBounds, count, count_or, wrong_shape
from personae.llm.estimate import CharTokenEstimator, RemoteModel
from personae.llm.retry import retry_after_seconds

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
    # Untrusted numbers: a count that is no whole non-negative number is not reported (our
    # estimate stands in), a huge one is clamped (bounds.count).
    prompt = count_or(_field(reported, "prompt_tokens"), prompt_fallback)
    completion = count_or(_field(reported, "completion_tokens"), completion_fallback)
    details = _field(reported, "prompt_tokens_details")
    cached = count(_field(details, "cached_tokens")) if details is not None else None
    evaluated = prompt - min(prompt, cached) if cached is not None else prompt
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
        max_seconds: float | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UserError(INSTALL_HINT) from exc
        self._openai = openai
        self.model = model
        self.base_url = base_url or default_base_url() or "https://api.openai.com/v1"
        self.timeout = timeout
        self.max_seconds = max_seconds  # a whole reply's time; default: ReplyBounds.for_request
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
        server = f"The server at {self.base_url}"

        def bounds() -> ReplyBounds:
            return ReplyBounds.for_request(server, request.options, self.timeout, self.max_seconds)

        with self._translated_errors():
            try:
                text, done_reason, reported, model, chunks = self._send(
                    self._body(request), on_token, bounds()
                )
            except openai.APIStatusError as exc:
                refused = exc.status_code in (400, 422, 500) and request.schema is not None
                if not refused or self._schema_format != "json_schema":
                    raise
                self._schema_format = "json_object"  # the llama.cpp server's own shape
                text, done_reason, reported, model, chunks = self._send(
                    self._body(request), on_token, bounds()
                )
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
        return [str(m["id"]) for m in self.models()]

    def models(self) -> list[dict[str, Any]]:
        """The entries of ``GET /models`` (id, created, owned_by), for ``personae models``."""
        with self._translated_errors():
            return [m.model_dump() for m in self._client.models.list().data]

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
        self, body: dict[str, Any], on_token: TokenCallback | None, bounds: ReplyBounds
    ) -> tuple[str, str | None, Any, str | None, int]:
        if on_token is None:
            return self._complete(body, bounds)
        return self._stream(body, on_token, bounds)

    def _complete(
        self, body: dict[str, Any], bounds: ReplyBounds
    ) -> tuple[str, str | None, Any, str | None, int]:
        response = self._client.chat.completions.create(**body)
        choices = response.choices
        if choices is not None and not isinstance(choices, list):
            raise wrong_shape(bounds.server, "a reply whose choices are not a list", choices)
        if not choices:
            raise BackendError(
                f"The server at {self.base_url} answered without a choice for model {self.model}.",
                transient=True,
            )
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None else None
        if content is not None and not isinstance(content, str):
            raise wrong_shape(bounds.server, "a reply whose content is not text", content)
        bounds.chunk()
        text = bounds.take(server_text(content or ""))
        return (
            text,
            "length" if bounds.cut else _reason(bounds.server, getattr(choice, "finish_reason", None)),
            None if bounds.cut else response.usage,
            _text_or_none(response.model),
            0,
        )

    def _stream(
        self, body: dict[str, Any], on_token: TokenCallback, bounds: ReplyBounds
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
                bounds.chunk()
                model = _text_or_none(chunk.model) or model
                if chunk.usage is not None:
                    reported = chunk.usage
                for content, reason in _chunk_parts(bounds.server, chunk):
                    content = bounds.take(content) if content else ""
                    if content:
                        pieces.append(content)
                        on_token(content)
                    if reason:
                        done_reason = reason
                if bounds.cut:  # too long: stop reading, keep what fits
                    done_reason, reported = "length", None
                    break
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
                retry_after=retry_after_seconds(exc.response.headers.get("retry-after")),
            ) from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # The client builds its reply objects without validating them: a server that sends
            # JSON of another shape surfaces here, while we read them. One message, no traceback.
            raise BackendError(
                f"The server at {self.base_url} sent a reply of the wrong shape ({exc}). It is not "
                "behaving as an OpenAI-compatible server; check it, then resume the run."
            ) from None


def _chunk_parts(server: str, chunk: Any) -> list[tuple[str, str | None]]:
    """(content, finish_reason) of each choice of a stream chunk, after checking their shape."""
    choices = chunk.choices
    if choices is None:
        return []
    if not isinstance(choices, list):
        raise wrong_shape(server, "a stream chunk whose choices are not a list", choices)
    parts = []
    for choice in choices:
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None) if delta is not None else None
        if content is not None and not isinstance(content, str):
            raise wrong_shape(server, "a stream chunk whose content is not text", content)
        parts.append((server_text(content or ""), _reason(server, getattr(choice, "finish_reason", None))))
    return parts


def _reason(server: str, reason: Any) -> str | None:
    if reason is None or isinstance(reason, str):
        return reason
    raise wrong_shape(server, "a finish_reason that is not text", reason)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        detail = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(detail, Mapping):
            detail = detail.get("message")
        if detail:
            return str(detail)
    return str(getattr(exc, "message", None) or exc)
