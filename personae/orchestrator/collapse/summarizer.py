"""The summarizer's call: one span of turns (or summaries) in, a validated collapse out.

An answer that fails validation is asked for once more with the reason; a second failure (or a
model error) gives way to the deterministic extractive collapse, so a collapse never stops a run.
Every call made is returned with the answer, for the collapse's one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from personae.config.loader import LoadedScenario
from personae.config.models import CollapseConfig
from personae.errors import BackendError
from personae.llm.base import Backend, ChatMessage, ChatRequest
from personae.memory import items as schema
from personae.memory.block import item_line
from personae.orchestrator.calls import call_model
from personae.orchestrator.collapse.budget import Budget
from personae.orchestrator.prompts import header_text
from personae.store.models import MemoryNode
from personae.store.repo import CallRecord

COLLAPSE_INSTRUCTIONS = (
    "Collapse the turns above into memory. Reply with JSON only: \"summary\" says in one to "
    "three sentences what these turns did; \"facts\" are numbers and statements established "
    "there; \"decisions\" what was decided; \"open_questions\" what is still open. Every item "
    "cites the turns it comes from in \"turns\". When an item replaces or contradicts one "
    "already in memory, put that item's id in \"supersedes\" or \"contradicts\". Do not repeat "
    "items already in memory."
)
MERGE_INSTRUCTIONS = (
    "Merge these summaries into one shorter summary of the whole span, keeping names, numbers "
    "and decisions. Reply with JSON only: {\"summary\": \"...\"}."
)


@dataclass(frozen=True)
class Answer:
    """The summarizer's collapse of one span and the calls that produced it."""

    output: schema.CollapseOutput
    calls: tuple[CallRecord, ...]
    mode: str  # model | retried | fallback


@dataclass
class Summarizer:
    loaded: LoadedScenario
    backend: Backend
    config: CollapseConfig
    budget: Budget
    seed: int | None = None

    def __post_init__(self) -> None:
        self.name = self.config.summarizer
        self.header = header_text(self.loaded.scenario, self.loaded.personas)
        self.limits = schema.Limits.for_tokens(self.config.max_tokens)

    def ask(
        self,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        *,
        at: int,
        index: int,
        level: int,
    ) -> Answer:
        """The model's collapse of ``sources``, validated; asked twice at most, then the
        extractive fallback."""
        items = level == 1
        turns = sorted({t for s in sources for t in s.turns})
        # Items are labelled 1, 2, 3 … in the prompt, not by node id: the prompt (and its hash,
        # which replay compares) must not depend on what else the database holds.
        known_ids = list(range(1, len(known) + 1)) if items else []
        json_schema = schema.output_schema(turns, known_ids, self.limits, items=items)
        options = self.options(at, index, level)
        calls: list[CallRecord] = []
        error: str | None = None
        for attempt in (1, 2):
            messages = self.messages(sources, known if items else [], pinned, level=level,
                                     error=error)
            call = CallRecord(
                purpose="collapse", persona=self.name, backend=self.backend.name,
                model=self.backend.model, options=options, prompt=messages,
                manifest=self.manifest(sources, known if items else [], pinned, index, level,
                                       attempt),
                response=None, schema=json_schema, turn=at + 1,
            )
            try:  # a failed call is kept, with its error, for the collapse's transaction
                call, result = call_model(
                    self.backend,
                    ChatRequest(messages=messages, options=options, schema=json_schema),
                    call,
                    on_failure=lambda failed: calls.append(
                        replace(failed, error=f"the model server failed: {failed.error}")
                    ),
                )
            except BackendError:
                break
            try:
                output = schema.validate(result.text, turns, known_ids, self.limits, items=items)
            except ValueError as exc:
                error = str(exc)
                calls.append(replace(call, error=f"rejected: {error}"))
                continue
            calls.append(call)
            return Answer(output, tuple(calls), "model" if attempt == 1 else "retried")
        return Answer(schema.extractive(sources, self.limits, items=items), tuple(calls), "fallback")

    def options(self, at: int, index: int, level: int) -> dict[str, Any]:
        persona = self.loaded.personas.get(self.name)
        options: dict[str, Any] = {"temperature": 0.2}
        options |= self.loaded.scenario.options.as_dict()
        if persona is not None:
            options |= persona.options.as_dict()
        options.pop("stop", None)  # a stop string could cut the JSON short
        options["num_predict"] = self.config.max_tokens
        options["num_ctx"] = self.budget.window
        if self.seed is not None:
            options["seed"] = self.seed + 100_000 + index * 10 + level
        return options

    def messages(
        self,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        *,
        level: int,
        error: str | None = None,
    ) -> tuple[ChatMessage, ...]:
        parts = []
        if pinned:
            parts.append("Pinned by the user:\n" + "\n".join(item_line(n) for n in pinned))
        if known:
            parts.append(
                "Already in memory (id in brackets):\n"
                + "\n".join(known_line(i, n) for i, n in enumerate(known, start=1))
            )
        if level == 1:
            parts.append("Turns to collapse:\n" + "\n".join(
                source_line(s.turns[0], s.author, s.text) for s in sources
            ))
            ask = COLLAPSE_INSTRUCTIONS
        else:
            parts.append("Summaries to merge:\n" + "\n".join(
                f"[turns {s.turns[0]}-{s.turns[-1]}] {s.text}" for s in sources
            ))
            ask = MERGE_INSTRUCTIONS
        persona = self.loaded.personas.get(self.name)
        who = f"You are {self.name}" + (
            f": {persona.description.strip()}" if persona and persona.description else "."
        )
        body = "\n\n".join(parts) + f"\n\n---\n{who}\n{ask}"
        if error:
            body += f"\nYour previous answer was rejected: {error}. Answer again, correctly."
        return (ChatMessage("system", self.header), ChatMessage("user", body))

    def manifest(
        self,
        sources: Sequence[schema.Source],
        known: Sequence[MemoryNode],
        pinned: Sequence[MemoryNode],
        index: int,
        level: int,
        attempt: int,
    ) -> list[dict[str, Any]]:
        count = self.backend.count_text_tokens
        span_text = "\n".join(s.text for s in sources)
        refs = [s.ref for s in sources]
        # Messages by id; summaries by node id, or by key when made in this same collapse (the
        # store swaps keys for ids when it commits the collapse).
        span: dict[str, Any] = (
            {"message_ids": refs} if level == 1 else {
                "node_ids": [r for r in refs if isinstance(r, int)],
                "node_keys": [r for r in refs if isinstance(r, str)],
            }
        )
        return [
            {"section": "collapse", "index": index, "level": level, "attempt": attempt},
            {"section": "header", "tokens": count(self.header)},
            {"section": "memory/pinned", "node_ids": [n.id for n in pinned],
             "tokens": sum(count(item_line(n)) for n in pinned)},
            {"section": "memory/known", "node_ids": [n.id for n in known],
             "tokens": sum(count(known_line(i, n)) for i, n in enumerate(known, start=1))},
            {"section": "span", "turns": sorted({t for s in sources for t in s.turns}),
             **span, "tokens": count(span_text)},
        ]


def source_line(turn: int, author: str, text: str) -> str:
    return f"[turn {turn}] {author}: {text}"


def known_line(label: int, node: MemoryNode) -> str:
    return f"[{label}] {node.kind}: {node.text}"
