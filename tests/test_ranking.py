"""Memory ranking as in Generative Agents: recency × importance × relevance, the weights under
``memory.ranking``, importance rated once per item by the model under a JSON schema."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from personae.llm.base import ChatRequest
from personae.llm.scripted import ScriptedBackend
from personae.memory.ranking import Weights, generative_rank, generative_scores
from personae.store.models import MemoryNode
from tests.builders import TERSE, make_scenario, roster
from tests.durable_support import run_events
from tests.test_collapse import WINDOW, summarizer


def node(node_id: int, text: str, turn: int, importance: int | None) -> MemoryNode:
    data = {"importance": importance} if importance is not None else None
    return MemoryNode(id=node_id, run_id=1, kind="fact", text=text, turn=turn, data=data)


NODES = [  # newest first, as the block passes them
    node(3, "The cache TTL is 60 seconds.", 10, 2),
    node(2, "Latency is 900 ms at peak.", 6, 9),
    node(1, "The database CPU runs at 85 percent.", 2, None),
]


def text(n: MemoryNode) -> str:
    return n.text


def test_each_weight_orders_the_items_by_its_own_term() -> None:
    only = {
        "recency": Weights(1, 0, 0, 0.5),
        "importance": Weights(0, 1, 0),
        "relevance": Weights(0, 0, 1),
    }
    assert generative_rank("latency at peak", NODES, 10, only["recency"], text) == [3, 2, 1]
    assert generative_rank("latency at peak", NODES, 10, only["importance"], text) == [2, 1, 3]  # unrated: 5
    assert generative_rank("database cpu", NODES, 10, only["relevance"], text) == [1, 3, 2]
    scores = generative_scores("latency at peak", NODES, 10, Weights(2, 1, 3, 0.5), text)
    assert scores == {3: 2 * 1 + 0.2 + 0, 2: 2 * 0.5**4 + 0.9 + 3 * 1, 1: 2 * 0.5**8 + 0.5 + 0}


def scenario(ranking: str | None) -> str:
    memory = f"  ranking: {ranking}\n" if ranking else ""
    return make_scenario(
        name="ranking-test", goal="Decide on a cache for the orders API.",
        personas=roster(["Planner", "Critic", "Summarizer"], systems=TERSE, options="{num_predict: 40}"),
        extra=f"memory:\n  num_ctx: {WINDOW}\n  collapse: {{at_fraction: 0.6, keep_recent: 3, "
        f"max_tokens: 200}}\n{memory}termination: {{max_turns: 40}}\n",
    )


def rater(request: ChatRequest) -> str:
    """Importance calls: the turn number the item cites, modulo 10, plus one."""
    if request.schema is not None and "importance" in request.schema["properties"]:
        found = re.search(r"turn (\d+)", request.messages[-1].content)
        return json.dumps({"importance": int(found.group(1)) % 10 + 1 if found else 3})
    return summarizer(rng=random.Random(1))(request)


def test_generative_ranking_rates_each_item_once_and_orders_the_block_by_it(tmp_path: Path) -> None:
    backend = ScriptedBackend(default=rater, num_ctx=WINDOW)
    weights = "{type: generative, recency: 0, importance: 1, relevance: 0}"
    store, run_id, _ = run_events(tmp_path / "g.db", scenario(weights), backend)
    items = [n for n in store.memory_nodes(run_id) if n.kind in ("fact", "question")]
    rated = store.calls(run_id, "importance")
    assert items and len(rated) == len(items)  # once per item, never again
    for item in items:
        cited = int(re.search(r"turn (\d+)", item.text).group(1))
        assert item.data["importance"] == cited % 10 + 1
    assert all(c.schema and c.schema["properties"]["importance"]["maximum"] == 10 for c in rated)
    importance = {n.id: n.data["importance"] for n in items}
    blocks = [e for c in store.calls(run_id, "turn") for e in c.manifest if e["section"] == "memory/facts"]
    assert any(len({importance[i] for i in e["node_ids"]}) > 1 for e in blocks)  # a real ordering
    for entry in blocks:  # each block lists its facts best first: by importance, then newest
        ids = entry["node_ids"]
        assert ids == sorted(ids, key=lambda i: (-importance[i], -i))


def test_bm25_ranking_asks_no_importance(tmp_path: Path) -> None:
    backend = ScriptedBackend(default=rater, num_ctx=WINDOW)
    store, run_id, _ = run_events(tmp_path / "b.db", scenario(None), backend)
    assert store.memory_nodes(run_id, ["fact"]) and store.calls(run_id, "importance") == []
    assert all("importance" not in (n.data or {}) for n in store.memory_nodes(run_id, ["fact"]))
