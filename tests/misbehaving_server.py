"""A loopback model server that misbehaves on purpose: for the client's bounds (issue 21, item 6).

It speaks just enough of Ollama's API (``/api/chat``, ``/api/show``, ``/api/tags``) and of the
OpenAI API (``/v1/chat/completions``, ``/v1/models``) for a backend to reach its chat call, and
answers each chat with ``server.reply``: a list of lines (NDJSON for Ollama, SSE ``data:`` for
OpenAI), a callable yielding lines (endless streams, bounded here in count and time so the
server always stops by itself), or ``(status, headers, body)`` for an error. Loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SECONDS = 20.0  # no stream of this server lasts longer, whatever the client does

Reply = list[str] | Callable[[], Iterable[str]] | tuple[int, dict[str, str], str]


class MisbehavingServer:
    def __init__(self) -> None:
        self.reply: Reply = []
        self.chats = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})
                else:
                    self._json({"models": [{"name": "m:latest", "model": "m:latest"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                if self.path == "/api/show":
                    self._json({"model_info": {"general.architecture": "x", "x.context_length": 2048}})
                    return
                owner.chats += 1
                reply = owner.reply
                if isinstance(reply, tuple):
                    status, headers, body = reply
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    data = body.encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                sse = self.path.startswith("/v1/")
                self.send_response(200)
                self.send_header("content-type", "text/event-stream" if sse else "application/x-ndjson")
                self.send_header("connection", "close")
                self.end_headers()
                lines = reply() if callable(reply) else reply
                ends = time.monotonic() + MAX_SECONDS
                try:
                    for line in lines:
                        if time.monotonic() > ends:
                            break
                        self.wfile.write((f"data: {line}\n\n" if sse else f"{line}\n").encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: that is the point
                self.close_connection = True

            def _json(self, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.host = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> MisbehavingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


def ollama_chunk(content: str = "", *, done: bool = False, **extra: Any) -> str:
    return json.dumps({"model": "m:latest", "message": {"role": "assistant", "content": content},
                       "done": done, **extra})


def ollama_final(**counts: Any) -> str:
    fields = {"done_reason": "stop", "prompt_eval_count": 10, "eval_count": 3, **counts}
    return json.dumps({"model": "m:latest", "message": {"role": "assistant", "content": ""},
                       "done": True, **fields})


def openai_chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
                       **extra})


def endless(line: str, pause: float = 0.0, limit: int = 1_000_000) -> Callable[[], Iterator[str]]:
    def lines() -> Iterator[str]:
        for _ in range(limit):
            if pause:
                time.sleep(pause)
            yield line
    return lines
