"""An Ollama-API-compatible HTTP server for tests, backed by the real embedded model.

No Ollama binary can be installed where these tests run, yet the Ollama backend must be exercised
through the official client, over HTTP, against real generation. This server speaks the part of
Ollama's API that Personae uses (``/api/chat`` streamed as NDJSON or not, ``/api/show``,
``/api/tags``, ``/api/embed``, ``/api/version``) with Ollama's field names and units
(nanoseconds), and answers from one ``EmbeddedBackend``.

It also misbehaves on request, because durable runs must be tested against a server that fails:
``server.fail_next("500" | "404" | "stall" | "cut" | "truncate" | "refuse", count=1)`` spoils the
next ``count`` chat requests, and ``server.requests`` records every request body received.

Usage numbers follow the Ollama version chosen with ``usage_style``:
``"current"`` (since ollama/ollama#17943: ``prompt_eval_count`` is the whole prompt, and
``prompt_eval_cached_count`` the reused prefix, omitted when 0), ``"total"`` (Ollama 0.5-0.33: the
whole prompt, no cache figure) or ``"evaluated"`` (Ollama 0.1.x and 0.30.0: only the evaluated
tokens, the field omitted when 0).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from personae.errors import BackendError
from personae.llm.base import ChatMessage, ChatRequest, ChatResult
from personae.llm.embedded import EmbeddedBackend

DEFAULT_MODEL_NAME = "smollm2:135m"
SERVER_VERSION = "0.34.0"
FAULT_KINDS = frozenset({"500", "404", "stall", "cut", "truncate", "refuse"})
USAGE_STYLES = frozenset({"current", "total", "evaluated"})
ROLES = frozenset({"system", "user", "assistant"})
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}  # what ``format: "json"`` asks for


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any  # the parsed JSON body; the raw text when it was not JSON; None when empty


class Faults:
    """A thread-safe queue of faults, each spoiling one upcoming ``/api/chat`` request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[str] = deque()

    def add(self, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._queue.extend([kind] * count)

    def take(self) -> str | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class OllamaTestServer:
    """One embedded model behind Ollama's HTTP API on 127.0.0.1, on an ephemeral port."""

    def __init__(
        self,
        backend: EmbeddedBackend,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        usage_style: str = "current",
        stall_seconds: float = 30.0,
    ) -> None:
        if usage_style not in USAGE_STYLES:
            raise ValueError(f"usage_style must be one of {sorted(USAGE_STYLES)}")
        self.backend = backend
        self.model_name = model_name
        self.usage_style = usage_style
        self.stall_seconds = stall_seconds
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.finals: list[dict[str, Any]] = []  # the done line (or object) of each chat answered
        self._model_lock = threading.Lock()  # one llama.cpp context: one generation at a time
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control ------------------------------------------------------------------------------
    def start(self) -> OllamaTestServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Spoil the next ``count`` chat requests: ``500``, ``404``, ``stall`` (sleep past the
        client's timeout), ``cut`` (drop the connection mid-stream), ``truncate`` (end the stream
        cleanly but without the ``done`` line) or ``refuse`` (close the socket at once)."""
        self.faults.add(kind, count)

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/api/chat" and isinstance(r.body, dict)]

    def __enter__(self) -> OllamaTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API --------------------------------------------------------------------------------
    def knows(self, name: Any) -> bool:
        if not isinstance(name, str) or not name:
            return False
        return name == self.model_name or f"{name}:latest" == self.model_name

    def chat(self, h: _Handler, body: dict[str, Any]) -> None:
        received = time.perf_counter_ns()
        if not self.knows(body.get("model")):
            return h.send_json(404, _not_found(body.get("model")))
        fault = self.faults.take()
        if fault is not None:
            return self._inject(h, fault, body)
        try:
            request = _chat_request(body)
        except ValueError as exc:
            return h.send_json(400, {"error": str(exc)})
        stream = body.get("stream", True) is not False
        writer = _ChunkWriter(h, self.model_name) if stream else None
        with self._model_lock:
            started = time.perf_counter_ns()
            try:
                result = self.backend.chat(request, on_token=writer.piece if writer else None)
            except BackendError as exc:
                if writer and writer.started:
                    return writer.finish({"error": str(exc)})
                return h.send_json(400, {"error": str(exc)})
        final = self._final_fields(result, received, started)
        self.finals.append(final)
        if writer:
            return writer.finish({**_chunk(self.model_name, ""), **final})
        h.send_json(200, {**_chunk(self.model_name, result.text), **final})

    def show(self, h: _Handler, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not self.knows(name):
            return h.send_json(404, {"error": f"model '{name}' not found"})
        if not hasattr(self.backend, "engine"):  # a scripted backend: no GGUF to describe
            return h.send_json(200, {"model_info": {}, "details": {}, "capabilities": ["completion"]})
        meta = self._metadata()
        h.send_json(
            200,
            {
                "modelfile": f"FROM {self.backend.model_path}\n",
                "parameters": 'stop                           "<|im_end|>"',
                "template": meta.get("tokenizer.chat_template", ""),
                "details": self._details(),
                "model_info": _model_info(meta),
                "capabilities": ["completion"],
                "modified_at": self._modified_at(),
            },
        )

    def tags(self, h: _Handler) -> None:
        path = self.backend.model_path
        stat = path.stat()
        digest = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        entry = {
            "name": self.model_name,
            "model": self.model_name,
            "modified_at": self._modified_at(),
            "size": stat.st_size,
            "digest": digest,
            "details": self._details(),
        }
        h.send_json(200, {"models": [entry]})

    def embed(self, h: _Handler, body: dict[str, Any]) -> None:
        received = time.perf_counter_ns()
        if not self.knows(body.get("model")):
            return h.send_json(404, _not_found(body.get("model")))
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return h.send_json(400, {"error": "input must be a string or a list of strings"})
        with self._embedder_lock:
            loaded = time.perf_counter_ns()
            embedder = self._load_embedder()
            started = time.perf_counter_ns()
            vectors, count = ([], 0)
            if texts:
                vectors, count = embedder.embed(texts, normalize=True, return_count=True)
        h.send_json(
            200,
            {
                "model": self.model_name,
                "embeddings": vectors,
                "total_duration": time.perf_counter_ns() - received,
                "load_duration": max(1, started - loaded),
                "prompt_eval_count": count,
            },
        )

    # -- internals ------------------------------------------------------------------------------
    def _final_fields(self, result: ChatResult, received: int, started: int) -> dict[str, Any]:
        usage = result.usage
        fields: dict[str, Any] = {
            "done": True,
            "done_reason": result.done_reason,
            "total_duration": time.perf_counter_ns() - received,
            "load_duration": max(1, started - received),
        }
        if self.usage_style == "evaluated":
            if usage.evaluated_tokens:
                fields["prompt_eval_count"] = usage.evaluated_tokens
        else:
            fields["prompt_eval_count"] = usage.prompt_tokens
            if self.usage_style == "current" and usage.cached_tokens:
                fields["prompt_eval_cached_count"] = usage.cached_tokens
        fields["prompt_eval_duration"] = usage.prompt_eval_ns
        fields["eval_count"] = usage.completion_tokens
        fields["eval_duration"] = usage.eval_ns
        return fields

    def _inject(self, h: _Handler, fault: str, body: dict[str, Any]) -> None:
        if fault == "500":
            return h.send_json(500, {"error": "llama runner process has terminated (injected)"})
        if fault == "404":
            return h.send_json(404, _not_found(body.get("model")))
        if fault == "stall":
            self._stopping.wait(self.stall_seconds)
            return h.drop_connection()
        if fault == "refuse":
            return h.drop_connection()
        writer = _ChunkWriter(h, self.model_name)
        for piece in ("This reply ", "is cut "):
            writer.piece(piece)
        if fault == "cut":
            return h.drop_connection()
        writer.finish(None)  # "truncate": a clean end of stream with no done line

    def _load_embedder(self) -> Any:
        """A second llama.cpp context in embedding mode, made on the first /api/embed only."""
        if self._embedder is None:
            self._embedder = _Embedder(self.backend.model_path)
        return self._embedder

    def _metadata(self) -> dict[str, str]:
        """The GGUF metadata Ollama's /api/show reports, as far as the engine tells it (the
        bundled model is a llama-architecture one; its window is the engine's n_ctx_train)."""
        engine = self.backend.engine
        return {
            "general.architecture": "llama",
            "general.size_label": "135M",
            "llama.context_length": str(engine.n_ctx_train or 0),
            "tokenizer.chat_template": engine.chat_template,
        }

    def _details(self) -> dict[str, Any]:
        meta = self._metadata()
        arch = meta.get("general.architecture", "llama")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": arch,
            "families": [arch],
            "parameter_size": meta.get("general.size_label", ""),
            "quantization_level": self.backend.model_path.stem.rsplit(".", 1)[-1],
        }

    def _modified_at(self) -> str:
        mtime = self.backend.model_path.stat().st_mtime
        return datetime.fromtimestamp(mtime, UTC).isoformat().replace("+00:00", "Z")


class _HTTPServer(ThreadingHTTPServer):
    """The socket side: an ephemeral port on loopback, one daemon thread per connection (so a
    stalled handler never blocks shutdown), and the ``OllamaTestServer`` that answers."""

    daemon_threads = True

    def __init__(self, app: OllamaTestServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the ``OllamaTestServer`` of the HTTP server."""

    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as Ollama (Go net/http) does

    @property
    def app(self) -> OllamaTestServer:
        assert isinstance(self.server, _HTTPServer)
        return self.server.app

    def do_GET(self) -> None:
        self.app.requests.append(RecordedRequest("GET", self.path, None))
        if self.path == "/":
            return self.send_text(200, "Ollama is running")
        if self.path == "/api/version":
            return self.send_json(200, {"version": SERVER_VERSION})
        if self.path == "/api/tags":
            return self.app.tags(self)
        self.send_text(404, "404 page not found")

    def do_POST(self) -> None:
        routes: dict[str, Callable[[_Handler, dict[str, Any]], None]] = {
            "/api/chat": self.app.chat,
            "/api/show": self.app.show,
            "/api/embed": self.app.embed,
        }
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            self.app.requests.append(RecordedRequest("POST", self.path, raw))
            return self.send_json(400, {"error": f"invalid character in JSON body: {exc.msg}"})
        self.app.requests.append(RecordedRequest("POST", self.path, body))
        route = routes.get(self.path)
        if route is None:
            return self.send_text(404, "404 page not found")
        if not isinstance(body, dict):
            return self.send_json(400, {"error": "the request body must be a JSON object"})
        route(self, body)

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(payload).encode())

    def send_text(self, status: int, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def drop_connection(self) -> None:
        """Close the socket without (the rest of) a response, as a crashed server would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


class _ChunkWriter:
    """Writes NDJSON lines as HTTP chunks, sending the headers with the first line."""

    def __init__(self, handler: _Handler, model: str) -> None:
        self.handler = handler
        self.model = model
        self.started = False

    def piece(self, text: str) -> None:
        self.line({**_chunk(self.model, text), "done": False})

    def start(self) -> None:
        if not self.started:
            self.started = True
            h = self.handler
            h.send_response(200)
            h.send_header("Content-Type", "application/x-ndjson")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()

    def line(self, payload: dict[str, Any]) -> None:
        self.start()
        data = (json.dumps(payload) + "\n").encode()
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()

    def finish(self, payload: dict[str, Any] | None) -> None:
        if payload is not None:
            self.line(payload)
        self.start()
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()


def _chunk(model: str, content: str) -> dict[str, Any]:
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    message = {"role": "assistant", "content": content}
    return {"model": model, "created_at": created, "message": message}


def _not_found(name: Any) -> dict[str, str]:
    return {"error": f'model "{name}" not found, try pulling it first'}


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    """The ChatRequest an Ollama /api/chat body asks for; ValueError says what is wrong."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    parsed: list[ChatMessage] = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"invalid message {m!r}: role must be one of {sorted(ROLES)}")
        parsed.append(ChatMessage(m["role"], str(m.get("content") or "")))
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("options must be a JSON object")
    fmt = body.get("format")
    schema = fmt if isinstance(fmt, dict) else ANY_JSON_OBJECT if fmt == "json" else None
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        raise ValueError(f'invalid format {fmt!r}: use "json" or a JSON schema')
    return ChatRequest(tuple(parsed), dict(options), schema)


class _Embedder:
    """A second llama.cpp server in embedding mode (mean pooling, L2-normalized vectors)."""

    def __init__(self, model_path: Any) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        params.n_ctx = 512
        params.verbosity = -1
        params.warmup = False
        params.port = 0
        self._server = xllamacpp.Server(params)

    def embed(self, texts: list[str], *, normalize: bool, return_count: bool) -> tuple[list[list[float]], int]:
        answer = self._server.handle_embeddings({"input": texts})
        vectors = [row["embedding"] for row in sorted(answer["data"], key=lambda r: r["index"])]
        return vectors, int(answer["usage"]["prompt_tokens"])


def _model_info(meta: dict[str, str]) -> dict[str, Any]:
    """GGUF metadata as Ollama's ``model_info``: numbers as numbers, no tokenizer tables."""
    info: dict[str, Any] = {}
    for key, value in meta.items():
        if key.startswith("tokenizer."):
            continue
        info[key] = _number(value)
    return info


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return value


@contextmanager
def serve_ollama(
    backend: EmbeddedBackend | None = None, **options: Any
) -> Iterator[OllamaTestServer]:
    """Run a test server for the length of a ``with`` block; ``.host`` is its base URL.

    Without a backend, one is made (SmolLM2, num_ctx 2048) and closed afterwards.
    """
    owned = backend is None
    model = backend if backend is not None else EmbeddedBackend(num_ctx=2048)
    server = OllamaTestServer(model, **options)
    try:
        with server:
            yield server
    finally:
        if owned:
            model.close()
