"""The self-ask policy (Press et al. 2022, "Measuring and narrowing the compositionality gap").

The asker answers the goal by asking itself follow-up questions, one a turn, in the paper's own
words: ``Follow up: …`` until ``So the final answer is: …``. Each follow-up is answered in a turn
of its own by the answerer, who sees only that question and the passage of the documents that
answers it best (BM25 over the run's chunks, ``passages.best_passage``) and replies
``Intermediate answer: …``; its message cites the passage (``derived_from``).

The asker's reply is constrained by a JSON schema (``step`` is one of the two markers), rendered
back into the self-ask text by a template, so even a small model keeps the format. After
``max_follow_ups`` the schema leaves only the final answer. The policy reads the markers from
the committed transcript alone, so a resumed run continues at the right step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personae.config.models import SelfAskPolicy
from personae.orchestrator.policies.passages import Passage, best_passage
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance

FOLLOW_UP = "Follow up"
FINAL = "So the final answer is"
INTERMEDIATE = "Intermediate answer"
STEP_CHARS = 160  # one sentence: a question, an answer (a longer one is cut off at num_predict)
ASK_TEMPLATE = "{{ step }}: {{ text }}"
ANSWER_TEMPLATE = INTERMEDIATE + ": {{ answer }}"
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": STEP_CHARS}},
    "required": ["answer"],
    "additionalProperties": False,
}


def ask_schema(steps: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "step": {"type": "string", "enum": list(steps)},
            "text": {"type": "string", "maxLength": STEP_CHARS},
        },
        "required": ["step", "text"],
        "additionalProperties": False,
    }


def asked(u: Utterance) -> tuple[str, str]:
    """(step, text) of an asker's message: from its structured reply, else from its words."""
    data = u.structured or {}
    if isinstance(data.get("step"), str) and isinstance(data.get("text"), str):
        return data["step"], data["text"]
    lowered = u.content.lower()
    if FINAL.lower() in lowered:
        return FINAL, u.content[lowered.index(FINAL.lower()) + len(FINAL):].lstrip(" :")
    if FOLLOW_UP.lower() in lowered:
        return FOLLOW_UP, u.content[lowered.index(FOLLOW_UP.lower()) + len(FOLLOW_UP):].lstrip(" :")
    return FOLLOW_UP, u.content  # no marker: the whole message is taken as the question


class SelfAsk:
    def __init__(self, config: SelfAskPolicy, passages: Sequence[Passage]) -> None:
        self.asker = config.asker
        self.answerer = config.answerer
        self.max_follow_ups = config.max_follow_ups
        self.min_follow_ups = config.min_follow_ups
        self.passages = tuple(passages)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        own = [u for u in history[since:] if u.persona != HUMAN]
        questions = [u for u in own if (u.meta or {}).get("self_ask") == "ask"]
        last = own[-1] if own else None
        if last is not None and (last.meta or {}).get("self_ask") == "ask":
            step, text = asked(last)
            if step == FINAL:
                return None
            return self._answer(text, len(questions), last.id)
        left = self.max_follow_ups - len(questions)
        steps = [FOLLOW_UP, FINAL] if left > 0 else [FINAL]
        what = (
            f"Ask yourself one follow-up question whose answer you need ({FOLLOW_UP}), or, if the "
            f"intermediate answers suffice, give the answer ({FINAL})."
            if left > 0 else f"Give the final answer now ({FINAL}), from the intermediate answers."
        )
        if len(questions) < self.min_follow_ups:
            steps = [FOLLOW_UP]
            what = f"Ask yourself one follow-up question whose answer you need ({FOLLOW_UP})."
        return TurnPlan(
            self.asker,
            phase="self-ask",
            instructions=f"{what} Set step to one of: {', '.join(steps)}; text is the question "
            "or the answer, one sentence.",
            schema=ask_schema(steps),
            template=ASK_TEMPLATE,
            meta={"self_ask": "ask", "follow_up": len(questions) + 1},
        )

    def _answer(self, question: str, number: int, asked_in: int | None) -> TurnPlan:
        passage = best_passage(question, self.passages)
        source = (
            f"Passage ({passage.where}):\n{passage.text}" if passage is not None
            else "No document passage is available: answer from what you know."
        )
        return TurnPlan(
            self.answerer,
            phase="self-ask",
            instructions=f"Follow-up question: {question}\n\n{source}\n\nAnswer the question "
            "from the passage, in one short sentence.",
            schema=ANSWER_SCHEMA,
            template=ANSWER_TEMPLATE,
            meta={
                "self_ask": "answer", "follow_up": number, "answers": asked_in,
                "node": passage.node_id if passage is not None else None,
            },
            isolated=True,
            links=(("derived_from", passage.node_id),) if passage is not None else (),
        )

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        return "answered"
