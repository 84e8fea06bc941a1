"""Ranking memory items as in Generative Agents (Park et al. 2023): recency × importance × relevance.

The paper scores a memory by ``α·recency + β·importance + γ·relevance``, each term in 0..1:
recency decays exponentially with the time since the memory was made (here: turns since the
collapse that made it, ``decay ** age``), importance is the model's own 1-10 rating of the memory,
asked once when it is made (``orchestrator/collapse/importance.py``; stored in the node's
``data["importance"]``, a passage or an unrated item counts as a neutral 5), and relevance is the
match with what the rebuild is about — here BM25 over the run's own memory (``retrieval``),
scaled so the best match is 1 and an item matching nothing is 0.

Everything it reads is stored, so the same memory gives the same order: the block (and the prompt
bytes) stay a pure function of the run's database, as with plain BM25.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from personae.memory.retrieval import bm25_scores
from personae.store.models import MemoryNode

NEUTRAL_IMPORTANCE = 5


@dataclass(frozen=True)
class Weights:
    recency: float = 1.0
    importance: float = 1.0
    relevance: float = 1.0
    decay: float = 0.9


def importance_of(node: MemoryNode) -> int:
    value = (node.data or {}).get("importance")
    return value if isinstance(value, int) and 1 <= value <= 10 else NEUTRAL_IMPORTANCE


def generative_scores(
    query: str, nodes: Sequence[MemoryNode], as_of: int, weights: Weights,
    text_of: Callable[[MemoryNode], str],
) -> dict[int, float]:
    """Node id -> the Generative Agents score of that node for a block built after ``as_of``."""
    bm25 = bm25_scores(query, [(n.id, text_of(n)) for n in nodes])
    best = min(bm25.values(), default=0.0)
    scores = {}
    for node in nodes:
        age = max(0, as_of - (node.turn or 0))
        relevance = bm25.get(node.id, 0.0) / best if best < 0 else 0.0
        scores[node.id] = round(
            weights.recency * weights.decay ** age
            + weights.importance * importance_of(node) / 10
            + weights.relevance * relevance,
            9,
        )
    return scores


def generative_rank(
    query: str, nodes: Sequence[MemoryNode], as_of: int, weights: Weights,
    text_of: Callable[[MemoryNode], str],
) -> list[int]:
    """Node ids, best first; ties keep the given order (callers pass newest first)."""
    scores = generative_scores(query, nodes, as_of, weights, text_of)
    return [n.id for n in sorted(nodes, key=lambda n: -scores[n.id])]
