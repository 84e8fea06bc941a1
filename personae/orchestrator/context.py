"""Building the prompt of a turn, and the manifest of what went into it.

Two layouts. ``cache_friendly`` (the default) keeps everything that does not change at the front —
the scenario header and the memory block (which changes only at a collapse), then the turns not
yet collapsed, which only ever grow at their end — and puts the speaking persona's instructions
last, so consecutive turns share the longest possible prefix and the server re-reads only the new
text. ``classic`` puts the persona's system prompt first, as AutoGen and
CrewAI do; it is kept for comparison, and its cost shows in ``llm_calls.evaluated_tokens``.

Speaker names live inside the message text, because chat templates drop the ``name`` field, and
every transcript entry has the same role whoever wrote it, so the past never re-renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from personae.config.models import Persona, Scenario
from personae.llm.base import Backend, ChatMessage
from personae.memory.block import MemoryBlock
from personae.orchestrator.state import Speaker, Utterance

TRANSCRIPT_HEADING = "Transcript so far:"


@dataclass(frozen=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    manifest: list[dict[str, Any]]
    tokens: int
    full_tokens: int = 0  # before any last-resort dropping: what collapse is triggered on


def header_text(scenario: Scenario, personas: Mapping[str, Persona]) -> str:
    roster = "\n".join(
        f"- {name}: {personas[name].description}".rstrip(": ") for name in scenario.roster
    )
    lines = [
        "Several personas deliberate together, one message at a time.",
        f"Goal: {scenario.goal.strip()}",
    ]
    if scenario.context.strip():
        lines.append(f"Context:\n{scenario.context.strip()}")
    lines.append(f"Participants:\n{roster}")
    lines.append("Each message below starts with its author's name. Write only your own message.")
    if scenario.language:
        lines.append(f"Always answer in this language: {scenario.language}.")
    return "\n\n".join(lines)


def render_utterance(u: Utterance, personas: Mapping[str, Persona]) -> str:
    label = f"{u.persona} ({u.phase})" if u.phase else u.persona
    text = u.content
    persona = personas.get(u.persona)
    if u.thinking and persona is not None and persona.thinking == "visible":
        text = f"<thinking>{u.thinking}</thinking>\n{text}"
    return f"{label}: {text}"


def persona_text(persona: Persona, speaker: Speaker) -> str:
    lines = [f"It is your turn. You are {persona.name}."]
    if persona.system:
        lines.append(persona.system.strip())
    if speaker.phase:
        lines.append(f"Current phase: {speaker.phase}.")
    lines.append(f"Write {persona.name}'s next message only, without a name prefix.")
    if speaker.instructions:  # the phase's mode, a reflect role, a reply schema: last, so heeded
        lines.append(speaker.instructions.strip())
    return "\n".join(lines)


def build_prompt(
    *,
    scenario: Scenario,
    personas: Mapping[str, Persona],
    history: Sequence[Utterance],
    speaker: Speaker,
    layout: str,
    backend: Backend,
    max_prompt_tokens: int,
    memory: MemoryBlock | None = None,
) -> Prompt:
    """The prompt for ``speaker``'s turn: header, memory block (when collapse is on), the turns
    not yet collapsed, the persona's instructions. Only as a last resort — collapse exists so it
    is never needed — the oldest turns are dropped to fit, which the manifest records."""
    persona = personas[speaker.persona]
    header = header_text(scenario, personas)
    stable = f"{header}\n\n{memory.text}" if memory is not None and memory.text else header
    if memory is not None:  # collapsed turns are in the memory block, not the transcript
        history = [u for u in history if u.turn > memory.after_turn]
    instructions = persona_text(persona, speaker)
    entries = [render_utterance(u, personas) for u in history]
    kept_from = 0
    full_tokens = None
    while True:
        messages = _assemble(
            layout, stable, entries[kept_from:], instructions, persona, extra=speaker.instructions
        )
        tokens = backend.count_tokens(messages)
        full_tokens = tokens if full_tokens is None else full_tokens
        if tokens <= max_prompt_tokens or kept_from >= len(entries):
            break
        kept_from += max(1, (len(entries) - kept_from) // 8)
    kept = history[kept_from:]
    manifest: list[dict[str, Any]] = [
        {"section": "header", "tokens": backend.count_text_tokens(header)},
        *(memory.manifest() if memory is not None else []),
        {
            "section": "transcript",
            "message_ids": [u.id for u in kept],
            "turns": [u.turn for u in kept],
            "tokens": backend.count_text_tokens("\n\n".join(entries[kept_from:])),
        },
        {"section": "persona", "persona": persona.name, "tokens": backend.count_text_tokens(instructions)},
    ]
    if kept_from:
        transcript = next(e for e in manifest if e["section"] == "transcript")
        transcript["dropped_turns"] = [u.turn for u in history[:kept_from]]
        transcript["last_resort"] = True
    return Prompt(messages=messages, manifest=manifest, tokens=tokens, full_tokens=full_tokens)


def _assemble(
    layout: str,
    header: str,
    entries: Sequence[str],
    instructions: str,
    persona: Persona,
    *,
    extra: str | None = None,
) -> tuple[ChatMessage, ...]:
    transcript = f"{TRANSCRIPT_HEADING}\n\n" + "\n\n".join(entries) if entries else ""
    if layout == "classic":
        system = f"{persona.system.strip() if persona.system else ''}\n\n{header}".strip()
        tail = f"Write {persona.name}'s next message only, without a name prefix."
        tail += f"\n{extra.strip()}" if extra else ""
        body = f"{transcript}\n\n{tail}" if transcript else tail
        return (ChatMessage("system", system), ChatMessage("user", body))
    body = f"{transcript}\n\n---\n{instructions}" if transcript else instructions
    return (ChatMessage("system", header), ChatMessage("user", body))
