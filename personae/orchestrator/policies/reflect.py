"""The reflect policy (Self-Refine, Reflexion): draft, verdict, revision, verdict, ...

The author drafts; the critic answers with a structured verdict ``{approve, issues}`` produced
under constrained decoding (``verdicts.VERDICT_SCHEMA``), so even a small model's verdict is machine
readable; the author revises; until the critic approves or ``max_rounds`` verdicts were given.
Roles follow from position in the policy's scope (author, critic, author, ...), so the policy is a
pure function of the transcript. Each message's role and links go into ``messages.meta``:
``{"reflect": "revision", "round": 2, "refines": <id of the draft it revises>}`` and
``{"reflect": "verdict", "reviews": <id>}`` — the memory graph turns ``refines`` into edges.
"""

from __future__ import annotations

from collections.abc import Sequence

from personae.config.models import ReflectPolicy
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance
from personae.orchestrator.verdicts import VERDICT_SCHEMA, is_approval


class Reflect:
    def __init__(self, config: ReflectPolicy) -> None:
        self.author = config.author
        self.critic = config.critic
        self.max_rounds = config.max_rounds

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        own = [u for u in history[since:] if u.persona != HUMAN]
        verdicts = len(own) // 2
        if not own:
            return TurnPlan(
                self.author,
                instructions=f"Write a first draft for {self.critic} to review: complete, "
                "concrete and short.",
                meta={"reflect": "draft", "round": 1},
            )
        if len(own) % 2 == 1:  # a draft or revision waits for its verdict
            return TurnPlan(
                self.critic,
                instructions=f"Review {self.author}'s latest draft. Approve it only if it needs "
                "no change. Otherwise list each issue that must be fixed, one short sentence "
                "each, at most three.",
                schema=VERDICT_SCHEMA,
                meta={"reflect": "verdict", "round": verdicts + 1, "reviews": own[-1].id},
            )
        if is_approval(own[-1]) or verdicts >= self.max_rounds:
            return None
        return TurnPlan(
            self.author,
            instructions=f"Revise your latest draft to fix every issue {self.critic} listed. "
            "Write the whole revised draft, not a list of changes.",
            meta={"reflect": "revision", "round": verdicts + 1, "refines": own[-2].id},
        )

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        last = next((u for u in reversed(history) if u.persona != HUMAN), None)
        return "approved" if last is not None and is_approval(last) else "max_rounds"
