"""The model's own chat template, rendered by Personae, and the prompt's tokens made from it.

The prompt's bytes must not depend on the engine: a run stored by one engine replays with the same
prompt hashes on another. So the template from the GGUF is rendered here, in Jinja's sandbox, with
the variables and settings that llama-cpp-python's ``Jinja2ChatFormatter`` used (the engine
Personae ran on first) — not by the engine's own template code, whose output may differ by a
space. The engine is asked only to tokenize pieces of text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from personae.errors import BackendError
from personae.llm.base import ChatMessage

Render = Callable[[list[dict[str, str]]], str]
# (text, parse special tokens?) -> token ids
Tokenize = Callable[[str, bool], list[int]]


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Transformers' ``tojson`` (non-ASCII kept as is), which chat templates are written for."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def template_renderer(template: str, *, bos_token: str, eos_token: str) -> Render:
    """A function rendering messages with ``template``, generation prompt added.

    Settings as Transformers and llama-cpp-python use them: trim_blocks, lstrip_blocks, the
    loop-control extension, ``{% generation %}`` passed through, ``raise_exception`` and
    ``strftime_now`` available."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class IgnoreGenerationTags(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    compiled = environment.from_string(template)

    def raise_exception(message: str) -> None:
        raise BackendError(f"The model's chat template refused the messages: {message}")

    def render(messages: list[dict[str, str]]) -> str:
        return compiled.render(
            messages=messages,
            eos_token=eos_token,
            bos_token=bos_token,
            raise_exception=raise_exception,
            add_generation_prompt=True,
            functions=None,
            function_call=None,
            tools=None,
            tool_choice=None,
            strftime_now=lambda f: datetime.now().strftime(f),
        )

    return render


def chat_pieces(render: Render, messages: tuple[ChatMessage, ...]) -> list[tuple[str, bool]]:
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


def prompt_token_ids(tokenize: Tokenize, render: Render, messages: tuple[ChatMessage, ...]) -> list[int]:
    """The prompt's tokens: the template's pieces with special tokens, contents as plain text.
    Counting (``count_tokens``, replay's counter) and generation both use this, so the counts
    and the prefix reuse they report are those of the prompt actually evaluated."""
    tokens: list[int] = []
    for text, template in chat_pieces(render, messages):
        tokens += tokenize(text, template)
    return tokens
