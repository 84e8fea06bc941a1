"""Importance of each new memory item, asked of the model once (Generative Agents ranking).

With ``memory.ranking.type: generative`` every fact, decision and question a collapse makes is
rated 1-10 by the model before the collapse commits: one short call per item under a JSON schema
(``{"importance": 1..10}``: constrained decoding, so even a small model answers with a number),
stored as an ``llm_calls`` row (purpose ``importance``) in the collapse's transaction, the score in
the item node's ``data["importance"]``. An item is never rated again: the score is part of the
stored memory, so the block a resumed or replayed run rebuilds is the same. A reply that does not
parse leaves the item unrated (``memory/ranking.py`` counts it as a neutral 5); a server failure
ends the rating for this collapse, recorded, as the summarizer's fallback does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from personae.errors import BackendError
from personae.llm.base import Backend, ChatMessage, ChatRequest
from personae.orchestrator.calls import call_model
from personae.orchestrator.collapse.edit import CollapsePlan
from personae.store.repo import CallRecord

ITEM_KINDS = ("fact", "decision", "question")
IMPORTANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"importance": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["importance"],
    "additionalProperties": False,
}
SYSTEM = (
    "You rate memories of a deliberation. On a scale of 1 to 10, where 1 is purely mundane "
    "(small talk, a restatement) and 10 is crucial to the goal (a hard constraint, a decision, "
    "a number the outcome depends on), rate how important the memory is."
)


def rating_messages(goal: str, kind: str, text: str) -> tuple[ChatMessage, ...]:
    return (
        ChatMessage("system", SYSTEM),
        ChatMessage("user", f"Goal: {goal.strip()}\nMemory ({kind}): {text}\n"
                    "Reply with JSON: importance (an integer from 1 to 10)."),
    )


def read_rating(text: str) -> int | None:
    try:
        value = json.loads(text).get("importance")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10 else None


def rate_items(
    plan: CollapsePlan, backend: Backend, *, goal: str, at: int, num_ctx: int, seed: int | None
) -> None:
    """Rate the plan's new items in place: their nodes get ``importance``, the calls join the
    plan's (and so the collapse's transaction)."""
    for i, spec in enumerate(plan.nodes):
        if spec.kind not in ITEM_KINDS:
            continue
        messages = rating_messages(goal, spec.kind, spec.text)
        options: dict[str, Any] = {"temperature": 0.0, "num_predict": 16, "num_ctx": num_ctx}
        if seed is not None:
            options["seed"] = seed + 200_000 + i
        record = CallRecord(
            purpose="importance", persona=None, backend=backend.name, model=backend.model,
            options=options, prompt=messages, manifest=[{"section": "importance", "kind": spec.kind}],
            response=None, schema=IMPORTANCE_SCHEMA, turn=at + 1,
        )
        try:
            call, result = call_model(
                backend, ChatRequest(messages, options, IMPORTANCE_SCHEMA), record,
                on_failure=plan.calls.append,
            )
        except BackendError:
            return
        score = read_rating(result.text)
        plan.calls.append(call if score is not None else replace(call, error="rejected: no rating"))
        if score is not None:
            plan.nodes[i] = replace(spec, data={**(spec.data or {}), "importance": score})
