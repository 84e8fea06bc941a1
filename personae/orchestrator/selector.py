"""The LLM selector: the model picks the next speaker where a router's rules leave it open.

Users of AutoGen report that model-driven speaker selection breaks on open-weight models: they
answer with a sentence, or with several names, and the group chat throws. Here the answer cannot
be anything but a name that is allowed: the reply is constrained to a JSON Schema whose ``next`` is
an enum of exactly the allowed candidates (Ollama ``format``, a llama.cpp grammar), plus a short
``reason``. Even so, an answer is checked, and one that is cut off, unparseable or not a candidate
falls back to the router's default — recorded in ``messages.meta["route"]`` with the problem.

The selector is the only part of routing that calls a model, so it sits outside the (pure)
policies: the router hands it the candidates, it returns the choice and the ``llm_calls`` row
(purpose ``select``), and the run loop commits that row in the same transaction as the turn it
chose. A resumed run never re-asks: the choice is in the transcript.

The prompt is the fallback speaker's turn prompt (header, memory block after a collapse, recent
turns) with the persona's cue at the end replaced by the selection instructions, so the
model server reuses the whole transcript prefix from the previous turn, and the next turn reuses it
from the selection. Where that is not possible (the classic layout) the selector builds the same
shape itself from the raw transcript.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

from personae.config.models import Persona, Scenario
from personae.errors import BackendError
from personae.llm.base import Backend, ChatMessage, ChatRequest
from personae.orchestrator.context import (
    TRANSCRIPT_HEADING,
    Prompt,
    header_text,
    render_utterance,
)
from personae.orchestrator.state import RunState, Speaker, Utterance
from personae.store.repo import CallRecord, Store

REASON_CHARS = 80  # a short sentence; small models otherwise ramble to the limit
SELECT_OPTIONS: dict[str, Any] = {"temperature": 0.3, "num_predict": 64}


PromptFor = Callable[[RunState, Speaker], Prompt]


class Selection(NamedTuple):
    speaker: Speaker  # persona decided, choices cleared, meta["route"] filled in
    calls: tuple[CallRecord, ...]  # to commit with the turn


class Selector(Protocol):
    def choose(self, state: RunState, speaker: Speaker) -> Selection: ...


def selection_schema(names: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "next": {"type": "string", "enum": list(names)},
            "reason": {"type": "string", "maxLength": REASON_CHARS},
        },
        "required": ["next", "reason"],
        "additionalProperties": False,
    }


def selection_text(names: Sequence[str], personas: Mapping[str, Persona]) -> str:
    candidates = "\n".join(
        f"- {name}: {personas[name].description}".rstrip(": ") if name in personas else f"- {name}"
        for name in names
    )
    return (
        "Choose who speaks next. Candidates:\n"
        f"{candidates}\n"
        "Pick the one whose contribution the discussion needs most now. Reply with one JSON "
        f"object only: next (one of {', '.join(names)}) and reason (one short sentence)."
    )


def selection_prompt(
    scenario: Scenario,
    personas: Mapping[str, Persona],
    history: Sequence[Utterance],
    names: Sequence[str],
    *,
    backend: Backend,
    max_prompt_tokens: int,
) -> tuple[tuple[ChatMessage, ...], list[dict[str, Any]]]:
    """Messages and manifest; the oldest turns go first if the window demands it."""
    header = header_text(scenario, personas)
    instructions = selection_text(names, personas)
    entries = [render_utterance(u, personas) for u in history]
    kept_from = 0
    while True:
        shown = entries[kept_from:]
        transcript = f"{TRANSCRIPT_HEADING}\n\n" + "\n\n".join(shown) if shown else ""
        body = f"{transcript}\n\n---\n{instructions}" if transcript else instructions
        messages = (ChatMessage("system", header), ChatMessage("user", body))
        if backend.count_tokens(messages) <= max_prompt_tokens or kept_from >= len(entries):
            break
        kept_from += max(1, (len(entries) - kept_from) // 8)
    manifest: list[dict[str, Any]] = [
        {"section": "header", "tokens": backend.count_text_tokens(header)},
        {
            "section": "transcript",
            "message_ids": [u.id for u in history[kept_from:]],
            "turns": [u.turn for u in history[kept_from:]],
        },
        {"section": "selection", "candidates": list(names)},
    ]
    if kept_from:
        manifest[1]["dropped_turns"] = [u.turn for u in history[:kept_from]]
    return messages, manifest


def from_turn_prompt(
    prompt: Prompt,
    persona: Persona,
    speaker: Speaker,
    names: Sequence[str],
    personas: Mapping[str, Persona],
) -> tuple[tuple[ChatMessage, ...], list[dict[str, Any]]] | None:
    """The turn prompt with its trailing persona instructions swapped for the selection's, or
    None when the prompt does not end with them (the classic layout)."""
    *head, last = prompt.messages
    instructions = prompt.cue
    if not instructions or last.role != "user" or not last.content.endswith(instructions):
        return None
    body = last.content[: len(last.content) - len(instructions)] + selection_text(names, personas)
    manifest = [s for s in prompt.manifest if s.get("section") != "persona"]
    manifest.append({"section": "selection", "candidates": list(names)})
    return (*head, ChatMessage("user", body)), manifest


def read_choice(text: str, names: Sequence[str]) -> tuple[str | None, str, str | None, bool]:
    """(name or None, reason, problem, partial). ``partial``: the JSON was cut off after a
    complete ``next`` field (the name is then still used)."""
    try:
        data = json.loads(text, strict=False)  # a raw newline inside the reason is fine
    except (ValueError, RecursionError):
        found = re.search(r'"next"\s*:\s*"([^"]*)"', text)
        if found and found.group(1) in names:
            begun = re.search(r'"reason"\s*:\s*"([^"]*)', text)
            return found.group(1), begun.group(1) if begun else "", None, True
        return None, "", f"not valid JSON: {text[:80]!r}", False
    if not isinstance(data, dict):
        return None, "", f"not a JSON object: {text[:80]!r}", False
    choice, reason = data.get("next"), str(data.get("reason") or "")[: REASON_CHARS * 2]
    if not isinstance(choice, str) or choice not in names:
        return None, reason, f"{choice!r} is not an allowed speaker ({', '.join(names)})", False
    return choice, reason, None, False


class LLMSelector:
    """Asks the model that plays the personas; failed calls are recorded, then raised."""

    def __init__(
        self,
        *,
        backend: Backend,
        scenario: Scenario,
        personas: Mapping[str, Persona],
        store: Store,
        num_ctx: int,
        seed: int | None = None,
        prompt_for: PromptFor | None = None,
    ) -> None:
        self.prompt_for = prompt_for  # the run loop's turn-prompt builder (memory-aware)
        self.backend = backend
        self.scenario = scenario
        self.personas = personas
        self.store = store
        self.num_ctx = num_ctx
        self.seed = seed

    def choose(self, state: RunState, speaker: Speaker) -> Selection:
        names = list(speaker.choices)
        turn = state.turn + 1
        options = {**SELECT_OPTIONS, "num_ctx": self.num_ctx}
        if self.seed is not None:
            options["seed"] = self.seed + turn
        shared = None
        if self.prompt_for is not None:
            fallback = self.personas[speaker.persona]
            turn_prompt = self.prompt_for(state, speaker)
            shared = from_turn_prompt(turn_prompt, fallback, speaker, names, self.personas)
        messages, manifest = shared or selection_prompt(
            self.scenario, self.personas, state.history, names,
            backend=self.backend, max_prompt_tokens=self.num_ctx - options["num_predict"],
        )
        schema = selection_schema(names)
        call = CallRecord(
            purpose="select", persona=None, backend=self.backend.name, model=self.backend.model,
            options=options, prompt=messages, manifest=manifest, response=None, schema=schema,
            turn=turn,
        )
        started = time.perf_counter_ns()
        try:
            result = self.backend.chat(ChatRequest(messages=messages, options=options, schema=schema))
        except BackendError as exc:
            wall = time.perf_counter_ns() - started
            self.store.record_call(state.run_id, replace(call, error=str(exc), wall_ns=wall))
            raise
        wall = time.perf_counter_ns() - started
        usage = result.usage
        call = replace(
            call, response=result.text, done_reason=result.done_reason,
            usage=usage, wall_ns=wall,
        )
        choice, reason, problem, partial = read_choice(result.text.strip(), names)
        route: dict[str, Any] = {"by": "selector", "reason": reason, "fallback": choice is None}
        if problem:
            route["problem"] = problem
        if partial:
            route["partial"] = True
        meta = {**(speaker.meta or {}), "route": route}
        chosen = replace(speaker, persona=choice or speaker.persona, choices=(), meta=meta)
        return Selection(chosen, (call,))
