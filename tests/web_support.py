"""A run made to test the viewer's edge cases, on the real orchestrator with a scripted model.

Every reply carries a script payload (``<script>``, ``<img onerror>``, a ``javascript:`` link) that
would set ``window.__pwned`` if a page ever ran it; the first reply is empty (the guard asks
again), one goes on as another persona (cut), a User input comes in, a thinking part is hidden,
and collapses store facts and questions that carry the payload too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.store.repo import Store
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_to_end

PAYLOAD = (
    '<script>window.__pwned = "script"</script>'
    '<img src=x onerror="window.__pwned = \'img\'">'
    '<a href="javascript:window.__pwned = \'link\'">click me</a>'
)
USER_TEXT = "User here: keep it cheap. <img src=y onerror=\"window.__pwned = 'user'\">"
WINDOW = 700
TURNS = 12


def scenario() -> str:
    inputs = json.dumps([{"at_turn": 2, "text": USER_TEXT}])
    return make_scenario(
        name="edge-cases", goal="Decide on a cache for the orders API.", guard=True,
        personas=roster(["Planner", "Critic", "Summarizer"], systems=TERSE, options="{num_predict: 60}"),
        extra=(
            f"inputs: {inputs}\n"
            f"memory:\n  num_ctx: {WINDOW}\n"
            "  collapse: {at_fraction: 0.5, keep_recent: 2, fan_in: 2, max_tokens: 200}\n"
            f"termination: {{max_turns: {TURNS}}}\n"
        ),
    )


def replies(seed: int = 7) -> Callable[[ChatRequest], str]:
    """Persona turns: the payload and fresh words (never a copy); the very first reply empty,
    the third one going on as another persona, the fourth with a thinking part. Collapse calls: a
    valid answer with the payload in a fact and a question."""
    rng = random.Random(seed)
    count = {"n": 0}

    def reply(request: ChatRequest) -> str:
        if request.schema is not None:
            props = request.schema["properties"]
            answer: dict[str, Any] = {"summary": f"They weighed a cache. {PAYLOAD}"}
            if "facts" in props:
                turns = props["facts"]["items"]["properties"]["turns"]["items"]["enum"]
                answer |= {
                    "facts": [{"text": f"p99 is 900 ms {PAYLOAD}", "turns": [turns[0]]}],
                    "decisions": [{"text": "Use LRU eviction.", "turns": [turns[-1]]}],
                    "open_questions": [{"text": "Which TTL?", "turns": [turns[-1]]}],
                }
                for name in ("facts", "decisions", "open_questions"):  # as many as allowed
                    answer[name] = answer[name][: props[name]["maxItems"]]
            return json.dumps(answer)
        count["n"] += 1
        words = " ".join(f"w{rng.randint(0, 10_000)}" for _ in range(14))
        if count["n"] == 1:
            return ""
        text = f"Eviction policy point {count['n']}: {words} {PAYLOAD}"
        if count["n"] == 3:
            text += "\nPlanner: I was never asked.\nCritic: Nor was I."
        if count["n"] == 4:
            text = f"<thinking>hidden {PAYLOAD}</thinking>{text}"
        return text

    return reply


def crafted_run(db: Path) -> int:
    """The edge-case run, stored in ``db``; its id."""
    store, run_id = run_to_end(db, scenario(), ScriptedBackend(default=replies(), num_ctx=WINDOW))
    store.close()
    return run_id


def counts(db: Path, run_id: int) -> dict[str, int]:
    with Store.open_readonly(db) as store:
        return {
            "messages": len(store.messages(run_id)),
            "nodes": len(store.memory_nodes(run_id)),
            "edges": len(store.memory_edges(run_id)),
        }
