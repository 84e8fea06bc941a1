"""What a turn asks the model for, and how its reply becomes a message.

A plain turn is parsed by ``replies/parsing.py`` (thinking split off, other speakers' lines cut). A
structured turn — a persona with ``output_schema``, or a reflect verdict — is produced under that
schema (constrained decoding), validated, stored as JSON in ``messages.structured``, and rendered as
text in ``messages.content`` for the other personas to read. A reply that fails validation keeps its
text, gets no structured value, and says why in ``messages.meta["structured_error"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from personae.config.models import Persona
from personae.orchestrator.state import TurnPlan
from personae.orchestrator.verdicts import render_verdict
from personae.replies import structured
from personae.replies.parsing import parse_reply
from personae.config.template import render_template


@dataclass(frozen=True)
class TurnOutput:
    content: str
    thinking: str | None = None
    cut: str | None = None
    structured: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None


def prepare(speaker: TurnPlan, persona: Persona) -> TurnPlan:
    """Settle the turn's schema (the policy's, else the persona's) and tell the model about it."""
    schema = speaker.schema or persona.output_schema
    if schema is None:
        return speaker
    instructions = "\n".join(t for t in (speaker.instructions, structured.schema_hint(schema)) if t)
    own = speaker.schema is None  # the persona's own schema, so its own template
    template = persona.output_template if own else speaker.template
    return replace(speaker, schema=schema, instructions=instructions, template=template)


def interpret(raw: str, speaker: TurnPlan, roster: Sequence[str]) -> TurnOutput:
    meta = dict(speaker.meta or {})
    if speaker.instructions:  # later prompts re-render this turn's cue from it, word for word
        meta["instructions"] = speaker.instructions
    if speaker.schema is not None:
        data, error = structured.parse(raw.strip(), speaker.schema)
        if data is not None:
            verdict = meta.get("reflect") == "verdict"
            content = render_verdict(data) if verdict else structured.render(data)
            if speaker.template and not verdict:
                try:
                    content = render_template(speaker.template, data)
                except ValueError as exc:  # recorded; the plain rendering stands in
                    meta["template_error"] = str(exc)
            return TurnOutput(content, structured=data, meta=meta or None)
        meta["structured_error"] = error
    parsed = parse_reply(raw, speaker.persona, roster)
    return TurnOutput(parsed.content, parsed.thinking, parsed.cut, None, meta or None)
