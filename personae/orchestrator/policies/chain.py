"""The chain policy (Chain-of-Agents, Zhang et al., NeurIPS 2024): long documents, short windows.

The worker reads the documents one chunk a turn, in document order; each turn sees only its
chunk, the question and the previous turn's note — the "communication unit" — never the whole
transcript (``TurnPlan.isolated``), so no prompt grows with the document. After the last chunk
the manager answers the question from the last note alone. Every worker turn cites its chunk
(``derived_from`` edge from its message node to the chunk's node) and the note it built on
(``messages.meta["chain"]``), so "which chunks did this answer come from" is one graph walk.

Which chunk is next follows from the number of worker turns in the policy's scope, so the policy
is a pure function of (transcript, documents) and a resumed run continues at the right chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personae.config.models import ChainPolicy
from personae.orchestrator.policies.passages import Passage
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance

NO_NOTE = "(none yet: this is the first chunk)"
NOTE_CHARS = 400  # a unit stays short, so every prompt is bounded: header, chunk, one unit, cue


def text_schema(field: str) -> dict[str, Any]:
    """A reply of one bounded text field: constrained decoding keeps even a small model to it."""
    return {
        "type": "object",
        "properties": {field: {"type": "string", "maxLength": NOTE_CHARS}},
        "required": [field],
        "additionalProperties": False,
    }


class Chain:
    def __init__(self, config: ChainPolicy, passages: Sequence[Passage]) -> None:
        self.worker = config.worker
        self.manager = config.manager
        self.passages = tuple(passages)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        own = [u for u in history[since:] if u.persona != HUMAN]
        units = [u for u in own if (u.meta or {}).get("chain") == "worker"]
        if any((u.meta or {}).get("chain") == "manager" for u in own):
            return None
        note = units[-1].content.strip() if units else ""
        index = len(units)
        total = len(self.passages)
        if index < total:
            passage = self.passages[index]
            return TurnPlan(
                self.worker,
                phase=f"chunk {index + 1}/{total}",
                instructions=(
                    f"You read part {index + 1} of {total} of the documents. Notes so far:\n"
                    f"{note or NO_NOTE}\n\nPart {index + 1} ({passage.where}):\n{passage.text}\n\n"
                    "Write the new notes: keep every fact from the notes so far that bears on the "
                    "goal, add what this part says about it, in at most four short lines."
                ),
                meta={
                    "chain": "worker", "chunk": index + 1, "of": total,
                    "node": passage.node_id, "builds_on": units[-1].id if units else None,
                },
                schema=text_schema("notes"),
                template="{{ notes }}",
                isolated=True,
                links=(("derived_from", passage.node_id),),
            )
        return TurnPlan(
            self.manager,
            phase="answer",
            instructions=(
                f"The workers read all {total} parts of the documents. Their final notes:\n"
                f"{note or NO_NOTE}\n\nAnswer the goal from these notes, in two sentences."
            ),
            meta={"chain": "manager", "builds_on": units[-1].id if units else None},
            schema=text_schema("answer"),
            template="{{ answer }}",
            isolated=True,
        )

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        return "answered"
