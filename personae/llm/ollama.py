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
is malformed. ``backends.ollama_host`` checks the variable first, with a clear message.
"""

from __future__ import annotations

import json
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
from personae.llm.estimate import CharTokenEstimator, RemoteModel

TRANSIENT_4XX = frozenset({408, 429})  # timeouts and rate limits pass; retrying is right


def usage_from_final(final: Mapping[str, Any], estimated_prompt: int) -> tuple[Usage, bool]:
    """Usage from the ``done`` chunk, and whether its prompt size was measured (not estimated).

    See the module docstring for the three ways Ollama versions report ``prompt_eval_count``.
    """
    reported = int(final.get("prompt_eval_count") or 0)
    cached = final.get("prompt_eval_cached_count")
    if cached is not None:
        prompt = max(reported, int(cached))
        evaluated, measured = prompt - int(cached), True
    elif reported == 0 or reported * 2 < estimated_prompt:
        prompt, evaluated, measured = max(estimated_prompt, reported), reported, False
    else:
        prompt, evaluated, measured = reported, reported, True
    usage = Usage(
        prompt_tokens=prompt,
        evaluated_tokens=evaluated,
        completion_tokens=int(final.get("eval_count") or 0),
        total_ns=int(final.get("total_duration") or 0),
        load_ns=int(final.get("load_duration") or 0),
        prompt_eval_ns=int(final.get("prompt_eval_duration") or 0),
        eval_ns=int(final.get("eval_duration") or 0),
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
    ) -> None:
        self.model = model
        self.host = host
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._num_ctx = num_ctx
        self._show: Mapping[str, Any] | None = None
        self._estimator = CharTokenEstimator()
        import ollama  # here, not at the top: see the module docstring

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
        final: dict[str, Any] | None = None
        with self._translated_errors():
            for part in self._stream_chat(self._chat_body(request)):
                content = server_text((part.get("message") or {}).get("content") or "")
                if content:
                    pieces.append(content)
                    if on_token:
                        on_token(content)
                if part.get("done"):
                    final = part
                    break
        if final is None:
            raise BackendError(
                f"The Ollama server at {self.host} cut off the reply of {self.model} before it "
                "finished (no final chunk). It may have crashed or been restarted; try again.",
                transient=True,
            )
        usage, _measured = usage_from_final(final, self._estimator.estimate(request.messages))
        # Calibrated on what the call row will store, measured or not (see CharTokenEstimator).
        self._estimator.calibrate(request.messages, usage.prompt_tokens)
        return ChatResult(
            text="".join(pieces),
            usage=usage,
            model=str(final.get("model") or self.model),
            done_reason=str(final.get("done_reason") or "stop"),
        )

    def close(self) -> None:
        self._client.close()

    # -- for `personae doctor` ----------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Names of the models the server has pulled (``/api/tags``)."""
        with self._translated_errors():
            listing = self._client._request(dict, "GET", "/api/tags")
        # Ollama before 0.1.4x named each entry only by "name"; later ones send both.
        return [str(m.get("model") or m.get("name")) for m in listing.get("models") or []]

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
        keep_alive = request.keep_alive or self.keep_alive
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return body

    def _stream_chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Chunks as plain dicts, so fields newer than the client (the cached count) survive."""
        return self._client._request(dict, "POST", "/api/chat", json=body, stream=True)

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
