"""Building the prompt of a turn, and the manifest of what went into it.

Two layouts. ``cache_friendly`` (the default) is laid out so that each prompt *extends the
previous prompt and its reply exactly*, which is the one thing a server's prefix cache rewards:

    system     header: goal, context, every participant's instructions  [+ memory block]
    user       It is your turn. You are Analyst.                         (the turn's cue)
    assistant  <Analyst's message, as the model wrote it>
    user       It is your turn. You are Critic.
    assistant  <Critic's message>
    …
    user       It is your turn. You are Planner.                          ← this call

The header changes only at a collapse; every persona turn stays in place as a cue and the reply
that followed it, so the next call re-reads only the end of the last reply, one short cue and
whatever the turn adds (a phase's mode, a reply schema). The personas' instructions sit in the
stable header rather than in each turn's cue because whatever a turn's prompt ends with stays in
every later prompt: a full set of instructions per turn would cost ~100 tokens of window per turn
and be re-read on every call. Messages from ``User`` (scripted inputs, --interactive) go into the
user message before the next cue.

``named`` (the default) and ``transcript`` put what small models need *last*: they weight the end of the prompt
and copy whatever reads as their own earlier words. The header (goal, context, roster) stays
first and stable; every turn is shown as text with its author's name — never as the model's own
assistant message — and the prompt ends with the speaker's cue: who speaks now, that persona's
instructions, the goal, the turn's extra instructions::

    system     header: goal, context, participants
    user       Transcript so far:  Planner: …  Analyst: …   +   the cue   (``transcript``)
    -- or --
    user       Planner: …          one message per turn, then             (``named``)
    user       Analyst: …
    user       the cue

The cue is not kept once the turn is over, so each prompt extends the previous one up to the end
of the transcript, and the server re-reads the last reply (it was generated as an assistant
message, it is now text in a user message) and the new cue: about a reply and a cue per turn,
still linear in the number of turns (``docs/performance.md`` has the numbers).

``classic`` puts the speaking persona's system prompt first and the transcript in one user
message, as AutoGen and CrewAI do; it is kept for comparison, and its cost shows in
``llm_calls.evaluated_tokens``: a changed first message makes the server re-read everything.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from personae.config.models import Persona, Scenario
from personae.llm.base import Backend, ChatMessage
from personae.memory.block import MemoryBlock
from personae.orchestrator.state import TurnPlan, Utterance

TRANSCRIPT_HEADING = "Transcript so far:"
CACHE_FRIENDLY = "cache_friendly"
CLASSIC = "classic"
TRANSCRIPT = "transcript"
NAMED = "named"
LAYOUTS = (NAMED, TRANSCRIPT, CACHE_FRIENDLY, CLASSIC)
SPEAKER_LAST = (TRANSCRIPT, NAMED)  # the layouts that end with the speaker's cue


@dataclass(frozen=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    manifest: list[dict[str, Any]]
    tokens: int
    full_tokens: int = 0  # before any last-resort dropping: what collapse is triggered on
    cue: str = ""  # the text the last message ends with that hands the turn over, if any


def header_text(
    scenario: Scenario, personas: Mapping[str, Persona], *, instructions: bool = False
) -> str:
    """The scenario header. With ``instructions`` (the cache-friendly layout) it carries every
    participant's own instructions, so that they are read once per run instead of once a turn."""
    lines = [
        "Several personas deliberate together, one message at a time.",
        f"Goal: {scenario.goal.strip()}",
    ]
    if scenario.context.strip():
        lines.append(f"Context:\n{scenario.context.strip()}")
    if instructions:
        lines.append("Participants and their instructions:")
        lines.extend(_participant(personas[name]) for name in scenario.roster)
        lines.append(
            "Each user message says whose turn it is; the assistant message after it is that "
            "persona's message. Write only the message of the persona whose turn it is, as that "
            "persona, following its instructions above."
        )
    else:
        roster = "\n".join(
            f"- {name}: {personas[name].description}".rstrip(": ") for name in scenario.roster
        )
        lines.append(f"Participants:\n{roster}")
        lines.append(
            "Each message below starts with its author's name. Write only your own message."
        )
    if scenario.language:
        lines.append(f"Always answer in this language: {scenario.language}.")
    return "\n\n".join(lines)


def _participant(persona: Persona) -> str:
    parts = [f"## {persona.name}"]
    if persona.description:
        parts.append(persona.description.strip())
    if persona.system:
        parts.append(persona.system.strip())
    return "\n".join(parts)


def render_utterance(u: Utterance, personas: Mapping[str, Persona]) -> str:
    """A transcript entry as one line of text with its author's name (classic layout, the
    selector's own prompt, collapse sources)."""
    label = f"{u.persona} ({u.phase})" if u.phase else u.persona
    return f"{label}: {_said(u, personas)}"


def _said(u: Utterance, personas: Mapping[str, Persona]) -> str:
    persona = personas.get(u.persona)
    if u.thinking and persona is not None and persona.thinking == "visible":
        return f"<thinking>{u.thinking}</thinking>\n{u.content}"
    return u.content


def turn_cue(persona: str, phase: str | None, instructions: str | None) -> str:
    """The user message that hands a turn to a persona. Past turns are rendered with the same
    cue they were asked with (``messages.meta["instructions"]`` keeps a turn's extra
    instructions), so a prompt is the previous one plus new text, never a rewrite of it."""
    lines = [f"It is your turn. You are {persona}."]
    if phase:
        lines.append(f"Current phase: {phase}.")
    if instructions:  # the phase's mode, a reflect role, a reply schema: last, so heeded
        lines.append(instructions.strip())
    return "\n".join(lines)


def cache_friendly_cue(persona: Persona, speaker: TurnPlan) -> str:
    """What ends the prompt of ``speaker``'s turn in the cache-friendly layout."""
    return turn_cue(persona.name, speaker.phase, speaker.instructions)


def speaker_cue(scenario: Scenario, persona: Persona, speaker: TurnPlan) -> str:
    """What ends the prompt in the speaker-last layouts: who speaks now, what that persona does,
    the goal, and the turn's own extra instructions (mode, reflect role, schema) last. Short on
    purpose: a small model follows three plain lines better than ten."""
    name = persona.name
    lines = [f"Now it is {name}'s turn."]
    role = (persona.system or "").strip() or persona.description.strip()
    if role:
        lines.append(role)
    lines.append(f"Goal: {scenario.goal.strip()}")
    if scenario.language:
        lines.append(f"Answer in this language: {scenario.language}.")
    lines.append(f"Reply as {name}, in your own words; say something new.")
    if speaker.phase:
        lines.append(f"Current phase: {speaker.phase}.")
    if speaker.instructions:
        lines.append(speaker.instructions.strip())
    return "\n".join(lines)


def _classic_tail(persona: Persona, speaker: TurnPlan) -> str:
    """What ends a classic prompt, after the transcript."""
    tail = f"Write {persona.name}'s next message only, without a name prefix."
    return f"{tail}\n{speaker.instructions.strip()}" if speaker.instructions else tail


def _classic_instructions(persona: Persona, speaker: TurnPlan) -> str:
    lines = [f"It is your turn. You are {persona.name}."]
    if persona.system:
        lines.append(persona.system.strip())
    if speaker.phase:
        lines.append(f"Current phase: {speaker.phase}.")
    lines.append(_classic_tail(persona, speaker))
    return "\n".join(lines)


def instructions_text(scenario: Scenario, persona: Persona, speaker: TurnPlan, layout: str) -> str:
    """The speaking persona's part of the prompt, in any layout (for budgets)."""
    if layout == CLASSIC:
        return _classic_instructions(persona, speaker)
    if layout in SPEAKER_LAST:
        return speaker_cue(scenario, persona, speaker)
    return cache_friendly_cue(persona, speaker)


def layout_header(scenario: Scenario, personas: Mapping[str, Persona], layout: str) -> str:
    """The header a layout's prompts start with (cache-friendly: with every persona's
    instructions; classic: the roster, the speaker's own instructions go before it)."""
    return header_text(scenario, personas, instructions=layout == CACHE_FRIENDLY)


_turn_of = attrgetter("turn")


def build_prompt(
    *,
    scenario: Scenario,
    personas: Mapping[str, Persona],
    history: Sequence[Utterance],
    speaker: TurnPlan,
    layout: str,
    backend: Backend,
    max_prompt_tokens: int,
    memory: MemoryBlock | None = None,
    rendered: RenderCache | None = None,
) -> Prompt:
    """The prompt for ``speaker``'s turn: header, memory block (when collapse is on), the turns
    not yet collapsed, the persona's cue. Only as a last resort — collapse exists so it is never
    needed — the oldest turns are dropped to fit, which the manifest records."""
    persona = personas[speaker.persona]
    header = layout_header(scenario, personas, layout)
    if speaker.isolated:  # a recipe's turn that sees only its own instructions
        history, memory = (), None
    # The system message's shared part: the header, and the memory block once there is one.
    stable = f"{header}\n\n{memory.text}" if memory is not None and memory.text else header
    if memory is not None:  # collapsed turns are in the memory block, not the transcript
        # The transcript is in turn order: find the first verbatim turn by bisection, not by a
        # scan that grows with the run.
        history = history[bisect_right(history, memory.after_turn, key=_turn_of):]
    instructions = instructions_text(scenario, persona, speaker, layout)
    # Render every entry once; the loop below only slices (a full window may take ~14 tries).
    as_text = layout != CACHE_FRIENDLY  # every turn shown as named text
    if as_text:
        entries = [render_utterance(u, personas) for u in history]
        starts = list(range(len(history)))
    else:
        shape = render_transcript(history, personas, rendered)
        flat, offsets, starts = shape.messages, shape.offsets, shape.starts
        cue_message = ChatMessage("user", instructions)
        if shape.pending:  # User spoke last: the cue joins that message
            cue_message = ChatMessage("user", f"{shape.pending}\n\n{instructions}")

    def prompt_from(unit: int) -> tuple[ChatMessage, ...]:
        """The prompt keeping entries (classic) or groups (cache_friendly) from ``unit`` on."""
        if layout == CLASSIC:
            return _classic(stable, entries[unit:], persona, speaker)
        if layout == TRANSCRIPT:
            return _transcript(stable, entries[unit:], instructions)
        if layout == NAMED:
            return _named(stable, entries[unit:], instructions)
        return (ChatMessage("system", stable), *flat[offsets[unit]:], cue_message)

    fitted = drop_oldest(len(starts), prompt_from, backend, max_prompt_tokens)
    unit, messages, tokens = fitted.first, fitted.messages, fitted.tokens
    kept_from = starts[unit] if unit < len(starts) else len(history)
    kept = history[kept_from:]
    if as_text:
        shown = "\n\n".join(entries[unit:])
    else:
        shown = "\n\n".join(m.content for m in messages[1:-1])
    manifest: list[dict[str, Any]] = [
        {"section": "header", "tokens": backend.count_text_tokens(header)},
        *(memory.manifest() if memory is not None else []),
        {
            "section": "transcript",
            "message_ids": [u.id for u in kept],
            "turns": [u.turn for u in kept],
            "tokens": backend.count_text_tokens(shown),
        },
        {"section": "persona", "persona": persona.name, "tokens": backend.count_text_tokens(instructions)},
    ]
    if kept_from:
        transcript = next(e for e in manifest if e["section"] == "transcript")
        transcript["dropped_turns"] = [u.turn for u in history[:kept_from]]
        transcript["last_resort"] = True
    cue = "" if layout == CLASSIC else instructions
    return Prompt(messages, manifest, tokens, full_tokens=fitted.full_tokens, cue=cue)


@dataclass(frozen=True)
class Fitted:
    """A prompt trimmed to its window (``drop_oldest``)."""

    first: int  # the first unit (turn, or group of messages) kept
    messages: tuple[ChatMessage, ...]
    tokens: int
    full_tokens: int  # the prompt's tokens before anything was dropped


def drop_oldest(
    units: int,
    prompt_from: Callable[[int], tuple[ChatMessage, ...]],
    backend: Backend,
    max_prompt_tokens: int,
) -> Fitted:
    """The prompt ``prompt_from(first)`` for the smallest ``first`` whose tokens fit, dropping the
    oldest units an eighth of those left at a time (a full window takes ~14 tries, not one per
    turn); with every unit dropped it is returned even if it still does not fit."""
    first = 0
    messages = prompt_from(first)
    full_tokens = tokens = backend.count_tokens(messages)
    while tokens > max_prompt_tokens and first < units:
        first += max(1, (units - first) // 8)
        messages = prompt_from(first)
        tokens = backend.count_tokens(messages)
    return Fitted(first, messages, tokens, full_tokens)


@dataclass(frozen=True)
class Transcript:
    """The cache-friendly transcript, flat: a cue and the reply for every persona turn, messages
    from outside the roster (``User``) joined to the user message before the next cue. A *group*
    is one persona turn with the User lines before it — the unit last-resort trimming drops."""

    messages: list[ChatMessage]
    offsets: list[int]  # where each group starts in ``messages`` (and one past the end)
    starts: list[int]  # the history index of each group's first entry
    pending: str | None  # User lines after the last persona turn: the new cue joins them
    entries: int = 0  # history entries rendered
    last_id: int | None = None  # the message id of the last of them


@dataclass
class RenderCache:
    """The transcript as rendered for the previous prompt of a run. A committed entry never
    changes and the history only grows at its end (until a collapse moves its start), so the
    next prompt renders only the entries added since, instead of the whole run every turn."""

    first_id: int | None = None
    done: Transcript | None = None

    def resume_point(self, history: Sequence[Utterance]) -> Transcript | None:
        done = self.done
        if done is None or done.pending is not None or done.last_id is None:
            return None
        n = done.entries
        if not 0 < n <= len(history) or history[0].id != self.first_id:
            return None
        return done if history[n - 1].id == done.last_id else None


def render_transcript(
    history: Sequence[Utterance],
    personas: Mapping[str, Persona],
    cache: RenderCache | None = None,
) -> Transcript:
    done = cache.resume_point(history) if cache is not None else None
    if done is not None:
        messages, offsets, starts = list(done.messages), done.offsets[:-1], list(done.starts)
        begin = done.entries
    else:
        messages, offsets, starts, begin = [], [], [], 0
    pending: list[str] = []
    start = begin
    for i in range(begin, len(history)):
        u = history[i]
        if not pending:
            start = i
        if u.persona not in personas:
            pending.append(f"{u.persona}: {u.content}")
            continue
        cue = turn_cue(u.persona, u.phase, (u.meta or {}).get("instructions"))
        offsets.append(len(messages))
        starts.append(start)
        messages.append(ChatMessage("user", "\n\n".join([*pending, cue])))
        messages.append(ChatMessage("assistant", _said(u, personas)))
        pending = []
    if pending:  # trailing User lines: a group of their own, whose message the cue completes
        offsets.append(len(messages))
        starts.append(start)
    offsets.append(len(messages))
    last_id = history[-1].id if history else None
    rendered = Transcript(
        messages, offsets, starts, "\n\n".join(pending) or None, len(history), last_id
    )
    if cache is not None:
        cache.first_id, cache.done = (history[0].id if history else None), rendered
    return rendered


def entry_tokens(u: Utterance, personas: Mapping[str, Persona], layout: str, backend: Backend) -> int:
    """Roughly what one more transcript entry adds to a prompt (collapse's budgets)."""
    if layout != CACHE_FRIENDLY or u.persona not in personas:
        return backend.count_text_tokens(render_utterance(u, personas)) + (10 if layout == NAMED else 2)
    cue = turn_cue(u.persona, u.phase, (u.meta or {}).get("instructions"))
    return backend.count_text_tokens(cue) + backend.count_text_tokens(_said(u, personas)) + 10


def _classic(
    stable: str, entries: Sequence[str], persona: Persona, speaker: TurnPlan
) -> tuple[ChatMessage, ...]:
    transcript = f"{TRANSCRIPT_HEADING}\n\n" + "\n\n".join(entries) if entries else ""
    system = f"{persona.system.strip() if persona.system else ''}\n\n{stable}".strip()
    tail = _classic_tail(persona, speaker)
    body = f"{transcript}\n\n{tail}" if transcript else tail
    return (ChatMessage("system", system), ChatMessage("user", body))


def _transcript(stable: str, entries: Sequence[str], cue: str) -> tuple[ChatMessage, ...]:
    body = f"{TRANSCRIPT_HEADING}\n\n" + "\n\n".join(entries) + f"\n\n{cue}" if entries else cue
    return (ChatMessage("system", stable), ChatMessage("user", body))


def _named(stable: str, entries: Sequence[str], cue: str) -> tuple[ChatMessage, ...]:
    return (
        ChatMessage("system", stable),
        *(ChatMessage("user", entry) for entry in entries),
        ChatMessage("user", cue),
    )
