"""The recipes' settings: the policies of the systems Personae grew from, and memory ranking.

``chain`` (Chain-of-Agents), ``self_ask`` (Press et al.) and ``task_loop`` (BabyAGI) are policies
like any other: ``models.Policy`` lists them, ``orchestrator/policies`` runs them. ``RankingConfig``
is ``memory.ranking``: how the rebuild picks memory items for the block (Generative Agents).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from personae.config.model_base import Loc, Strict


class ChainPolicy(Strict):
    """Chain of agents: the worker reads the documents chunk by chunk, seeing only its chunk and
    the previous worker's note (the "communication unit"); the manager answers from the last.

    ``unit: section`` walks the tree one level higher: a turn reads a whole section (its chunks
    packed in document order, as many as the window leaves room for; a bigger section takes
    consecutive turns). ``chunk``, the default, is the walk runs were stored with before it."""

    type: Literal["chain"]
    worker: str = Field(description="Reads one unit a turn and passes a note on.")
    manager: str = Field(description="Writes the answer from the last note.")
    unit: Literal["chunk", "section"] = Field(
        "chunk",
        description="What one worker turn reads: a chunk, or a section's chunks packed to the window.",
    )

    @model_validator(mode="after")
    def _two_people(self) -> ChainPolicy:
        if self.worker == self.manager:
            raise ValueError("the worker and the manager must be different personas")
        return self

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        yield ("worker",), self.worker
        yield ("manager",), self.manager


class SelfAskPolicy(Strict):
    """Self-ask: the asker answers by asking itself follow-up questions (``Follow up:``), each
    answered from the best passage of the documents (``Intermediate answer:``), until ``So the
    final answer is:``."""

    type: Literal["self_ask"]
    asker: str = Field(description="Asks the follow-ups and gives the final answer.")
    answerer: str = Field(description="Answers each follow-up from the retrieved passage.")
    max_follow_ups: int = Field(3, ge=1, le=50, description="Then the asker must answer.")
    min_follow_ups: int = Field(
        0, ge=0, le=50,
        description="Follow-ups the asker must ask before it may answer (a small model otherwise "
        "answers at once and never reads the documents).",
    )

    @model_validator(mode="after")
    def _two_people(self) -> SelfAskPolicy:
        if self.asker == self.answerer:
            raise ValueError("the asker and the answerer must be different personas")
        if self.min_follow_ups > self.max_follow_ups:
            raise ValueError(
                f"min_follow_ups ({self.min_follow_ups}) is more than max_follow_ups "
                f"({self.max_follow_ups}): lower it, or raise max_follow_ups"
            )
        return self

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        yield ("asker",), self.asker
        yield ("answerer",), self.answerer


class TaskLoopPolicy(Strict):
    """BabyAGI: the planner keeps a task list (JSON: id, text, status), the executor works the
    first open task, the prioritizer re-orders the open ones; until no task is open."""

    type: Literal["task_loop"]
    planner: str
    executor: str
    prioritizer: str
    max_tasks: int = Field(
        5, ge=1, le=100, description="Tasks beyond this many are not taken up (a budget)."
    )

    @model_validator(mode="after")
    def _distinct(self) -> TaskLoopPolicy:
        if len({self.planner, self.executor, self.prioritizer}) < 3:
            raise ValueError("the planner, the executor and the prioritizer must be different personas")
        return self

    def persona_refs(self) -> Iterator[tuple[Loc, str]]:
        yield ("planner",), self.planner
        yield ("executor",), self.executor
        yield ("prioritizer",), self.prioritizer


class RankingConfig(Strict):
    """How the rebuild ranks facts, decisions, questions and passages for the memory block.

    ``generative`` scores each item as in Generative Agents (Park et al. 2023):
    ``recency * decay^(turns since the item) + importance * (score/10) + relevance * bm25``, each
    term scaled to 0..1; the importance score (1-10) is asked of the model once per item."""

    type: Literal["bm25", "generative"] = "bm25"
    recency: float = Field(1.0, ge=0, le=100, description="Weight of recency (generative).")
    importance: float = Field(1.0, ge=0, le=100, description="Weight of importance (generative).")
    relevance: float = Field(1.0, ge=0, le=100, description="Weight of relevance (generative).")
    decay: float = Field(
        0.9, gt=0, le=1, description="Recency of an item made N turns ago: decay^N (generative)."
    )
