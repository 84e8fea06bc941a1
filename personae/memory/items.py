"""What a collapse produces: a summary plus facts, decisions and open questions, each citing the
turns it came from — the JSON schema the model is constrained to, its validation, and the
deterministic extractive fallback used when the model cannot produce it.

The schema is generated per collapse: cited turns are an ``enum`` of the turns being collapsed
and ``supersedes``/``contradicts`` an ``enum`` of the ids of the items the model was shown, so
constrained decoding (llama.cpp grammar, Ollama ``format``) cannot even write a dangling citation.
Every string and list has a maximum, so a complete answer always fits the reply budget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ITEM_KINDS = {"facts": "fact", "decisions": "decision", "open_questions": "question"}


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    turns: list[int] = Field(min_length=1)
    supersedes: list[int] = Field(default_factory=list)
    contradicts: list[int] = Field(default_factory=list)


class CollapseOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1)
    facts: list[Item] = Field(default_factory=list)
    decisions: list[Item] = Field(default_factory=list)
    open_questions: list[Item] = Field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    """Sizes that make a complete answer fit in ``max_tokens``. Counted in tokens: JSON
    punctuation and numbers cost about a token per character or two, so each item's keys and
    cited turns cost ~30 tokens whatever its text, and prose runs ~4 characters a token
    (measured on SmolLM2's tokenizer). Items go to facts first, then decisions, then questions."""

    summary_chars: int
    item_chars: int
    facts: int
    decisions: int
    questions: int

    @classmethod
    def for_tokens(cls, max_tokens: int) -> Limits:
        usable = int(max_tokens * 0.9) - 25  # 25: the answer's own braces, keys and brackets
        summary = max(20, min(150, usable // 4))
        item = max(15, min(50, usable // 8))
        count = max(1, (usable - summary) // (30 + item))
        order = ("facts", "decisions", "questions", "facts", "facts", "decisions", "questions")
        slots = {"facts": 0, "decisions": 0, "questions": 0}
        for i in range(count):
            slots[order[i % len(order)]] += 1
        return cls(summary * 4, item * 4, slots["facts"], slots["decisions"], slots["questions"])


def output_schema(
    turns: Sequence[int], known: Sequence[int], limits: Limits, *, items: bool = True
) -> dict[str, Any]:
    """The JSON Schema of one collapse answer. ``items=False``: a summary only (level-up)."""
    props: dict[str, Any] = {
        "summary": {"type": "string", "minLength": 1, "maxLength": limits.summary_chars}
    }
    required = ["summary"]
    if items:
        item: dict[str, Any] = {
            "text": {"type": "string", "minLength": 1, "maxLength": limits.item_chars},
            "turns": {"type": "array", "items": {"enum": sorted(set(turns))}, "minItems": 1,
                      "maxItems": 2},
        }
        item_required = ["text", "turns"]
        revisable = dict(item)
        if known:
            ref = {"type": "array", "items": {"enum": sorted(set(known))}, "maxItems": 1}
            revisable |= {"supersedes": ref, "contradicts": ref}
        for name, count in (
            ("facts", limits.facts), ("decisions", limits.decisions),
            ("open_questions", limits.questions),
        ):
            shape = revisable if name != "open_questions" else item
            props[name] = {
                "type": "array",
                "maxItems": count,
                "items": {"type": "object", "properties": shape, "required": item_required,
                          "additionalProperties": False},
            }
            required.append(name)
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def validate(
    text: str, turns: Sequence[int], known: Sequence[int], limits: Limits, *, items: bool = True
) -> CollapseOutput:
    """Parse and check an answer; raises ``ValueError`` with a message the model can act on."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the reply is not complete JSON ({exc}); write shorter items") from None
    try:
        output = CollapseOutput.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"field {where}: {first['msg']}") from None
    if len(output.summary) > limits.summary_chars * 2:
        raise ValueError(f"summary is longer than {limits.summary_chars} characters")
    allowed, shown = set(turns), set(known)
    caps = {"facts": limits.facts, "decisions": limits.decisions,
            "open_questions": limits.questions}
    for name in ITEM_KINDS:
        if len(getattr(output, name)) > caps[name]:
            raise ValueError(f"{name} has more than {caps[name]} items")
        for i, item in enumerate(getattr(output, name)):
            if not items:
                raise ValueError(f"{name} must be absent: only a summary is asked for")
            if not item.text.strip():
                raise ValueError(f"{name}[{i}].text is empty")
            bad = sorted(set(item.turns) - allowed)
            if bad:
                raise ValueError(
                    f"{name}[{i}] cites turns {bad}; cite only turns {sorted(allowed)}"
                )
            refs = sorted(set(item.supersedes + item.contradicts) - shown)
            if refs:
                raise ValueError(f"{name}[{i}] refers to unknown items {refs}")
    return output


# -- the deterministic fallback --------------------------------------------------------------

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_DECISION = re.compile(
    r"\b(decide[ds]?|decision|agree[ds]?|we will|we'll|let's|plan is|final decision|"
    r"approved?|go with|реш\w*|договор\w*|соглас\w*)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")


@dataclass(frozen=True)
class Source:
    """One text to collapse: a message (turn, author) or a summary being merged up a level."""

    turns: tuple[int, ...]
    author: str
    text: str
    ref: int | str | None = None  # the message id, or the summary's node id (or key, if new)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if len(s.strip()) > 3]


def extractive(sources: Sequence[Source], limits: Limits, *, items: bool = True) -> CollapseOutput:
    """A collapse without a model: each source's first sentence as the summary; sentences with
    numbers as facts, with decision words as decisions, ending in '?' as questions. The same
    input always gives the same output."""
    openings = []
    for source in sources:
        found = sentences(source.text)
        if found:
            label = f"{source.author} (turn {source.turns[0]})" if len(source.turns) == 1 else (
                f"turns {source.turns[0]}-{source.turns[-1]}"
            )
            openings.append(f"{label}: {found[0]}")
    summary = _clip(" ".join(openings) or "Nothing of substance was said.", limits.summary_chars)
    if not items:
        return CollapseOutput(summary=summary)
    picked: dict[str, list[Item]] = {name: [] for name in ITEM_KINDS}
    capacity = {"facts": limits.facts, "decisions": limits.decisions,
                "open_questions": limits.questions}
    seen: set[str] = set()
    for source in sources:
        for sentence in sentences(source.text):
            key = sentence.lower()
            if key in seen:
                continue
            if sentence.endswith("?"):
                name = "open_questions"
            elif _DECISION.search(sentence):
                name = "decisions"
            elif _NUMBER.search(sentence):
                name = "facts"
            else:
                continue
            if len(picked[name]) < capacity[name]:
                seen.add(key)
                picked[name].append(
                    Item(text=_clip(sentence, limits.item_chars), turns=list(source.turns[:2]))
                )
    return CollapseOutput(summary=summary, **picked)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
