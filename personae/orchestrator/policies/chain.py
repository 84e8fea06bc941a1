"""The chain policy (Chain-of-Agents, Zhang et al., NeurIPS 2024): long documents, short windows.

The worker reads the documents one chunk a turn, in document order; each turn sees only its
chunk, the question and the previous turn's note — the "communication unit" — never the whole
transcript (``TurnPlan.isolated``), so no prompt grows with the document. After the last chunk
the manager answers the question from the last note alone. Every worker turn cites its chunk
(``derived_from`` edge from its message node to the chunk's node) and the note it built on
(``messages.meta["chain"]``), so "which chunks did this answer come from" is one graph walk.

Which chunk is next follows from the number of worker turns in the policy's scope, so the policy
is a pure function of (transcript, documents) and a resumed run continues at the right chunk.

``unit: section`` walks one level higher in the document tree: a worker turn reads the chunks of
one section (``Passage.section``) together, in document order, as many as the window leaves room
for beside the header, the note and the reply (``fits``: the run loop measures the prompt the turn
would send, ``window.TurnFit``); a section too big for one turn takes consecutive turns, and two
sections never share one. Such a note is ``derived_from`` every chunk it read, and
``messages.meta["chunks"]`` lists them, so the next unit starts after the last chunk the stored
transcript says was read — a resumed or replayed run packs on from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from personae.config.models import ChainPolicy
from personae.orchestrator.policies.passages import Passage
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance

NO_NOTE = "(none yet: this is the first chunk)"
NO_SECTION_NOTE = "(none yet: this is the first section)"
NOTE_CHARS = 400  # a unit stays short, so every prompt is bounded: header, chunk, one unit, cue


def text_schema(field: str) -> dict[str, Any]:
    """A reply of one bounded text field: constrained decoding keeps even a small model to it."""
    return {
        "type": "object",
        "properties": {field: {"type": "string", "maxLength": NOTE_CHARS}},
        "required": [field],
        "additionalProperties": False,
    }


def _everything_fits(plan: TurnPlan) -> bool:
    return True


class Chain:
    def __init__(
        self,
        config: ChainPolicy,
        passages: Sequence[Passage],
        fits: Callable[[TurnPlan], bool] = _everything_fits,
    ) -> None:
        """``fits``: does this worker turn's prompt leave room for the reply (``unit: section``
        packs chunks while it does)."""
        self.worker = config.worker
        self.manager = config.manager
        self.unit = config.unit
        self.passages = tuple(passages)
        self.fits = fits
        self._position = {p.node_id: i for i, p in enumerate(self.passages)}
        self._sections: dict[int, int] = {}  # section key -> its ordinal, 1-based
        for passage in self.passages:
            self._sections.setdefault(_section_key(passage), len(self._sections) + 1)

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        own = [u for u in history[since:] if u.persona != HUMAN]
        units = [u for u in own if (u.meta or {}).get("chain") == "worker"]
        if any((u.meta or {}).get("chain") == "manager" for u in own):
            return None
        note = units[-1].content.strip() if units else ""
        if self.unit == "section":
            return self._section_turn(units, note)
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

    # -- unit: section ----------------------------------------------------------------------

    def _section_turn(self, units: Sequence[Utterance], note: str) -> TurnPlan:
        """The next section (or the next part of a section too big for one turn), packed with
        as many of its chunks as fit; the manager once every chunk has been read."""
        read = (units[-1].meta or {}).get("chunks") if units else None
        start = self._position[read[-1]] + 1 if read else 0
        total = len(self.passages)
        if start >= total:
            sections = len(self._sections)
            return TurnPlan(
                self.manager,
                phase="answer",
                instructions=(
                    f"The workers read all {sections} sections of the documents. Their final "
                    f"notes:\n{note or NO_SECTION_NOTE}\n\nAnswer the goal from these notes, in "
                    "two sentences."
                ),
                meta={"chain": "manager", "unit": "section",
                      "builds_on": units[-1].id if units else None},
                schema=text_schema("answer"),
                template="{{ answer }}",
                isolated=True,
            )
        key = _section_key(self.passages[start])
        end = start + 1  # one chunk at least: a window too small for that fails as a chunk walk does
        while (
            end < total
            and _section_key(self.passages[end]) == key
            and self.fits(self._section_plan(units, note, start, end + 1))
        ):
            end += 1
        return self._section_plan(units, note, start, end)

    def _section_plan(
        self, units: Sequence[Utterance], note: str, start: int, end: int
    ) -> TurnPlan:
        """The worker turn that reads chunks ``start:end`` (all of one section)."""
        chunks = self.passages[start:end]
        key = _section_key(chunks[0])
        section = self._sections[key]
        sections = len(self._sections)
        part = 1 + sum(1 for u in units if (u.meta or {}).get("section") == section)
        first = start == 0 or _section_key(self.passages[start - 1]) != key
        more = end < len(self.passages) and _section_key(self.passages[end]) == key
        split = not (first and not more)
        label = f"Section {section} ({chunks[0].where})"
        if split:
            label += f", part {part}" + (", continued in the next turn" if more else ", its end")
        text = "\n\n".join(p.text for p in chunks)
        return TurnPlan(
            self.worker,
            phase=f"section {section}/{sections}" + (f" part {part}" if split else ""),
            instructions=(
                f"You read section {section} of {sections} of the documents. Notes so far:\n"
                f"{note or NO_SECTION_NOTE}\n\n{label}:\n{text}\n\n"
                "Write the new notes: keep every fact from the notes so far that bears on the "
                "goal, add what this section says about it, in at most four short lines."
            ),
            meta={
                "chain": "worker", "unit": "section", "section": section, "of": sections,
                "part": part, "section_node": chunks[0].section,
                "chunks": [p.node_id for p in chunks],
                "builds_on": units[-1].id if units else None,
            },
            schema=text_schema("notes"),
            template="{{ notes }}",
            isolated=True,
            links=tuple(("derived_from", p.node_id) for p in chunks),
        )


def _section_key(passage: Passage) -> int:
    """The node a chunk hangs off; a chunk whose parent is unknown is a section of its own."""
    return passage.section if passage.section is not None else -passage.node_id
