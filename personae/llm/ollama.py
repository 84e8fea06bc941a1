"""The Ollama backend: the production model server, spoken to with the official ``ollama`` client.

What Ollama reports as ``prompt_eval_count`` has changed across versions, and the cache numbers are
the point of this project, so the reading is explicit (``usage_from_final``):

- Ollama since PR #17943 (Aug 2026) sends ``prompt_eval_cached_count`` next to
  ``prompt_eval_count``, and ``prompt_eval_count`` is the whole prompt, cached part included.
  Evaluated tokens = count - cached: exact.
- Ollama with its Go runners (``runner/llamarunner`` sets ``numPromptInputs = len(inputs)``), and
  0.30+ on llama-server once PR #16428 restored that meaning, sends the whole prompt and no cache
  figure. The reuse is invisible, so evaluated = prompt: we never claim savings we cannot see.
- Early Ollama (2024: issues #2068, #3427, #5370) and the first 0.30 builds (issue #16414)
  counted only the tokens they evaluated, and dropped the field on a full cache hit. A count that
  is missing, or under half our estimate of the prompt, is read that way: prompt = our estimate,
  evaluated = the count.

The released ``ollama`` client (0.6.x) parses replies into pydantic models that drop fields it
does not know, ``prompt_eval_cached_count`` among them, so we ask the client's own request method
(``Client._request``, stable since 0.4) for plain dicts. That keeps the client's host parsing,
headers and error types, and tolerates servers older or newer than the client.

The ``ollama`` package is imported where it is used, never when this module is: importing it
builds a default client from ``OLLAMA_HOST``, which fails with a bare ValueError when the variable
is malformed — even by a stray space that ``backends.ollama_host`` forgives. So the variable is
checked first, with a clear message, and the package is imported (``_import_ollama``) while
``OLLAMA_HOST`` holds the checked address; the default client it builds is never used.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from types import ModuleType
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from personae.errors import BackendError, ModelNotFound
from personae.llm.base import (
    ChatRequest,
    ChatResult,
    TokenCallback,
    Usage,
    server_text,
)
from personae.llm.bounds import (
    MAX_LINE_BYTES,
    MAX_NS,
    ReplyBounds,
    count,
    count_or,
    line_too_long,
    wrong_shape,
)
from personae.llm.estimate import CharTokenEstimator, RemoteModel
from personae.llm.retry import retry_after_seconds

def _import_ollama(host: str) -> ModuleType:
    """The ``ollama`` package, imported with ``OLLAMA_HOST`` set to ``host`` (already checked)
    for the duration of the import, then restored: see the module docstring."""
    if "ollama" in sys.modules:
        return sys.modules["ollama"]
    saved = os.environ.get("OLLAMA_HOST")
    os.environ["OLLAMA_HOST"] = host
    try:
        return importlib.import_module("ollama")
    finally:
        if saved is None:
            del os.environ["OLLAMA_HOST"]
        else:
            os.environ["OLLAMA_HOST"] = saved


TRANSIENT_4XX = frozenset({408, 429})  # timeouts and rate limits pass; retrying is right


def usage_from_final(final: Mapping[str, Any], estimated_prompt: int) -> tuple[Usage, bool]:
    """Usage from the ``done`` chunk, and whether its prompt size was measured (not estimated).

    See the module docstring for the three ways Ollama versions report ``prompt_eval_count``.
    Counts that are not whole non-negative numbers are read as not reported, huge ones clamped
    (``bounds.count``): the server is untrusted input.
    """
    reported = count_or(final.get("prompt_eval_count"), 0)
    cached = count(final.get("prompt_eval_cached_count"))
    if cached is not None:
        prompt = max(reported, cached)
        evaluated, measured = prompt - cached, True
    elif reported == 0 or reported * 2 < estimated_prompt:
        prompt, evaluated, measured = max(estimated_prompt, reported), reported, False
    else:
        prompt, evaluated, measured = reported, reported, True
    usage = Usage(
        prompt_tokens=prompt,
        evaluated_tokens=evaluated,
        completion_tokens=count_or(final.get("eval_count"), 0),
        total_ns=count_or(final.get("total_duration"), 0, MAX_NS),
        load_ns=count_or(final.get("load_duration"), 0, MAX_NS),
        prompt_eval_ns=count_or(final.get("prompt_eval_duration"), 0, MAX_NS),
        eval_ns=count_or(final.get("eval_duration"), 0, MAX_NS),
    )
    return usage, measured


def _tagged(name: str) -> str:
    """Ollama's spelling of a model name: ``llama3.2`` means ``llama3.2:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaBackend(RemoteModel):
    """An Ollama server behind the Backend protocol.

    ``num_ctx`` is sent with every request, because Ollama's default window is small and a longer
    prompt is truncated without a word. Left unset, it is the model's trained window (from
    ``/api/show``) capped at 8192, or 4096 when the model does not say.
    """

    name = "ollama"

    def __init__(
        self,
        model: str,
        *,
        host: str,
        num_ctx: int | None = None,
        keep_alive: str | None = "10m",
        timeout: float = 300,
        max_seconds: float | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.max_seconds = max_seconds  # a whole reply's time; default: ReplyBounds.for_request
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._num_ctx = num_ctx
        self._show: Mapping[str, Any] | None = None
        self._estimator = CharTokenEstimator()
        ollama = _import_ollama(host)  # here, not at the top: see the module docstring

        # A dead host should fail in seconds; a slow model may take minutes between chunks.
        self._client = ollama.Client(
            host=host, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )

    # -- protocol ---------------------------------------------------------------------------
    def context_length(self) -> int | None:
        info = self._model_info()
        arch = info.get("general.architecture")
        try:
            return int(info[f"{arch}.context_length"])
        except (KeyError, TypeError, ValueError):
            return None

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        pieces: list[str] = []
        final: Mapping[str, Any] | None = None
        server = f"The Ollama server at {self.host}"
        bounds = ReplyBounds.for_request(server, request.options, self.timeout, self.max_seconds)
        with self._translated_errors():
            for part in self._stream_chat(self._chat_body(request), bounds):
                bounds.chunk()
                content = server_text(_chunk_content(server, part))
                content = bounds.take(content) if content else ""
                if content:
                    pieces.append(content)
                    if on_token:
                        on_token(content)
                if part.get("done") or bounds.cut:
                    final = part
                    break
        if final is None:
            raise BackendError(
                f"The Ollama server at {self.host} cut off the reply of {self.model} before it "
                "finished (no final chunk). It may have crashed or been restarted; try again.",
                transient=True,
            )
        estimated = self._estimator.estimate(request.messages)
        if bounds.cut:  # we stopped reading: no final counts; the reply is what we kept
            usage = Usage(estimated, estimated, len(pieces))
        else:
            usage, _measured = usage_from_final(final, estimated)
        # Calibrated on what the call row will store, measured or not (see CharTokenEstimator).
        self._estimator.calibrate(request.messages, usage.prompt_tokens)
        model = final.get("model")
        reason = final.get("done_reason")
        return ChatResult(
            text="".join(pieces),
            usage=usage,
            model=model if isinstance(model, str) and model else self.model,
            done_reason="length" if bounds.cut or reason == "length" else "stop",
        )

    def close(self) -> None:
        self._client.close()

    # -- for `personae doctor` ----------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Names of the models the server has pulled (``/api/tags``)."""
        # Ollama before 0.1.4x named each entry only by "name"; later ones send both.
        return [str(m.get("model") or m.get("name")) for m in self.tags()]

    def tags(self) -> list[Mapping[str, Any]]:
        """The entries of ``/api/tags`` as the server sent them (name, size, modified_at,
        details...), for ``personae models``; entries that are not mappings are left out. Read
        as plain JSON, not the client's typed ``list()``: an older or odd server's entry would
        fail its validation, and one entry must not hide the others."""
        try:
            with self._translated_errors():
                listing = self._client._request(dict, "GET", "/api/tags")
        except TypeError:  # the client's dict(**body) of a body that is not a JSON object
            raise BackendError(
                f"The server at {self.host} answered /api/tags with something other than a "
                "JSON object; is it an Ollama server? Set OLLAMA_HOST to where Ollama runs."
            ) from None
        models = listing.get("models") if isinstance(listing, Mapping) else None
        return [m for m in models or [] if isinstance(m, Mapping)] if isinstance(models, list) else []

    def has_model(self, name: str) -> bool:
        return _tagged(name) in {_tagged(m) for m in self.list_models()}

    # -- internals ----------------------------------------------------------------------------
    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        options = {k: v for k, v in request.options.items() if v is not None}
        options["num_ctx"] = int(options.get("num_ctx") or self.num_ctx)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
            "stream": True,
            "options": options,
        }
        if request.schema is not None:
            body["format"] = request.schema
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body

    def _stream_chat(self, body: dict[str, Any], bounds: ReplyBounds) -> Iterator[Mapping[str, Any]]:
        """Chunks as plain dicts, so fields newer than the client (the cached count) survive.

        Read here on the client's own HTTP connection (its base URL, headers and timeouts) rather
        than through ``Client._request``, which would read a line of any length and fail with a
        bare AttributeError on a line that is JSON but not an object: every line is bounded
        (``MAX_LINE_BYTES``) and must be a JSON object before anything reads it.
        """
        import ollama

        server = bounds.server
        http = self._client._client
        with http.stream("POST", "/api/chat", json=body) as response:
            if response.status_code >= 400:
                text = _bounded_text(response)
                raise _with_retry_after(
                    self._response_error(ollama.ResponseError(text, response.status_code)),
                    response.headers.get("retry-after"),
                )
            for line in _lines(response, server):
                if not line.strip():
                    continue
                part = json.loads(line)
                if not isinstance(part, dict):
                    raise wrong_shape(server, "a stream line", part)
                if error := part.get("error"):
                    raise self._response_error(ollama.ResponseError(str(error)))
                yield part

    def _model_info(self) -> Mapping[str, Any]:
        if self._show is None:
            with self._translated_errors():
                shown = self._client._request(dict, "POST", "/api/show", json={"model": self.model})
            self._show = shown.get("model_info") or {}
        return self._show

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """Every failure of the server or the network becomes one of our errors, with the fix."""
        import ollama

        try:
            yield
        except ollama.ResponseError as exc:
            raise self._response_error(exc) from None
        except httpx.ReadTimeout:
            raise BackendError(
                f"The Ollama server at {self.host} did not answer within {self.timeout:g} s. "
                "It may be loading the model or overloaded: try again, raise the timeout, or "
                "choose `--backend embedded`.",
                transient=True,
            ) from None
        except json.JSONDecodeError:
            raise BackendError(
                f"The server at {self.host} sent a reply that is not JSON; is it an Ollama "
                "server? Set OLLAMA_HOST to where Ollama runs, or choose `--backend embedded`.",
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError):
            raise BackendError(
                f"The Ollama server at {self.host} cut off the connection before its reply was "
                "complete. It may have crashed or been restarted; try again.",
                transient=True,
            ) from None
        except (ConnectionError, httpx.TransportError):
            raise BackendError(
                f"The Ollama server at {self.host} does not answer. Start it with `ollama serve` "
                "(or set OLLAMA_HOST to where it runs), or choose `--backend embedded`.",
                transient=True,
            ) from None

    def _response_error(self, exc: Any) -> BackendError:  # an ollama.ResponseError
        status = exc.status_code
        if status == 404:
            return ModelNotFound(
                f"The Ollama server at {self.host} does not have the model '{self.model}'. "
                f"Download it with: ollama pull {self.model}",
                status=404,
            )
        if status == -1:  # an error line inside a stream: the runner failed mid-answer
            return BackendError(
                f"The Ollama server at {self.host} failed while answering: {exc.error}",
                transient=True,
            )
        transient = status >= 500 or status in TRANSIENT_4XX
        return BackendError(
            f"The Ollama server at {self.host} answered {status}: {exc.error}",
            transient=transient,
            status=status,
        )


def _chunk_content(server: str, part: Mapping[str, Any]) -> str:
    """The text of a chat chunk, after checking the chunk's shape."""
    if "done" in part and not isinstance(part["done"], bool):
        raise wrong_shape(server, "a chunk whose done is not true or false", part)
    message = part.get("message")
    if message is None:
        return ""
    if not isinstance(message, dict):
        raise wrong_shape(server, "a chunk whose message is not an object", part)
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise wrong_shape(server, "a chunk whose content is not text", part)
    return content


def _lines(response: httpx.Response, server: str) -> Iterator[str]:
    """The response's lines, none longer than ``MAX_LINE_BYTES``."""
    pending = b""
    for data in response.iter_bytes():
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if len(line) > MAX_LINE_BYTES:
                raise line_too_long(server)
            yield line.decode("utf-8", "replace")
        if len(pending) > MAX_LINE_BYTES:
            raise line_too_long(server)
    if pending:
        yield pending.decode("utf-8", "replace")


def _bounded_text(response: httpx.Response, limit: int = 64 * 1024) -> str:
    """An error reply's body, at most ``limit`` bytes of it."""
    body = b""
    for data in response.iter_bytes():
        body += data
        if len(body) >= limit:
            break
    return body[:limit].decode("utf-8", "replace")


def _with_retry_after(error: BackendError, header: str | None) -> BackendError:
    error.retry_after = retry_after_seconds(header)
    return error
