"""The turn plan of a scenario, before any model is asked: who speaks at each turn, in which
phase, where User's scripted inputs land, and where ``max_turns`` stops it (``personae validate``).

Policies are functions of the committed transcript, so the plan is the policy asked, turn after
turn, about a transcript of placeholder replies — the very code a run uses. Where a model decides
(a router's open choice) the plan stops and says so; a reflect loop is planned as if no reviewer
approves early. A structured reply is planned as the longest course its schema allows (lists as
long as allowed, the first of each set of values: a self-ask's Asker takes every follow-up, a task
loop's Planner lists as many tasks as it may). The recipes that read documents are planned over
the chunks the run would import; a chain by sections as if each section fits one turn (the least).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from personae.config.loader import LoadedScenario
from personae.config.models import ChainPolicy
from personae.config.modes import mode_table
from personae.memory.documents import read_documents
from personae.orchestrator.inputs import due_inputs
from personae.orchestrator.policies import make_policy, reads_documents
from personae.orchestrator.policies.passages import preview_passages
from personae.orchestrator.shortfall import shortfall
from personae.orchestrator.state import HUMAN, Utterance, persona_turns

MOST = 500  # a plan longer than this is cut: no one reads it, and repeat: true never ends


@dataclass(frozen=True)
class PlannedMessage:
    message: int  # its number in the transcript
    turn: int | None  # the persona turn it is (None: a User input)
    speaker: str
    phase: str | None
    isolated: bool = False  # the turn sees no transcript (a recipe's worker): no repeat to fear


@dataclass
class Plan:
    messages: list[PlannedMessage] = field(default_factory=list)
    ends: str = ""  # why the plan stops: "max_turns (in phase debate)", "phases_complete" …
    warnings: list[str] = field(default_factory=list)


def turn_plan(loaded: LoadedScenario, max_turns: int | None = None) -> Plan:
    scenario = loaded.scenario
    limit = max_turns or scenario.termination.max_turns
    passages = (
        preview_passages(read_documents(loaded.documents)) if reads_documents(scenario.policy) else ()
    )
    policy = make_policy(scenario.policy, scenario.roster, mode_table(scenario), passages)
    plan = Plan()
    history: list[Utterance] = []
    while True:
        taken = persona_turns(history)
        if taken >= limit:
            pending = policy.next_speaker(tuple(history))
            plan.ends = f"max_turns {limit}" + (f" (in phase {pending.phase})" if pending and pending.phase else "")
            break
        if len(history) >= MOST:
            plan.ends = f"(the plan is cut after {MOST} messages)"
            break
        speaker = policy.next_speaker(tuple(history))
        if speaker is None:
            plan.ends = policy.finish_reason(tuple(history))
            break
        if speaker.choices:
            plan.ends = f"from turn {taken + 1} the model chooses among {', '.join(speaker.choices)}"
            break
        for text, meta in due_inputs(scenario.inputs, history):
            history.append(Utterance(len(history) + 1, HUMAN, None, text, meta=meta))
            plan.messages.append(PlannedMessage(len(history), None, HUMAN, None))
        history.append(Utterance(
            len(history) + 1, speaker.persona, speaker.phase, f"(turn {taken + 1})",
            structured=longest(speaker.schema) if speaker.schema else None, meta=speaker.meta,
        ))
        plan.messages.append(
            PlannedMessage(len(history), taken + 1, speaker.persona, speaker.phase, speaker.isolated)
        )
    spoken = [m for m in plan.messages if m.turn is not None]
    twice = sorted(
        {b.speaker for a, b in zip(spoken, spoken[1:]) if a.speaker == b.speaker and not b.isolated}
    )
    if twice:
        plan.warnings.append(
            f"{', '.join(twice)} speak{'s' if len(twice) == 1 else ''} twice in a row: a small "
            "model then repeats itself. Put another persona between, or fewer rounds."
        )
    if isinstance(scenario.policy, ChainPolicy) and scenario.policy.unit == "section":
        plan.warnings.append(
            "A chain by sections is planned as one turn a section, the least: a section too "
            "long for the window is read in more turns (the run measures each prompt)."
        )
    short = shortfall(scenario.policy, limit)
    if short is not None:
        plan.warnings.append(short.message())
    return plan


def longest(schema: dict[str, Any]) -> Any:
    """A value of ``schema`` that takes the longest course: arrays as long as allowed (items
    numbered from 1 where they are integers), the first of an ``enum``, placeholders for text."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: longest(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = schema.get("maxItems") or schema.get("minItems") or 1
        items = [longest(schema.get("items") or {}) for _ in range(min(int(count), MOST))]
        for number, item in enumerate(items, start=1):
            if isinstance(item, dict):
                item.update({k: number for k, v in item.items() if type(v) is int})  # not a bool
        return items
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "(planned)"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as a reader takes it in: one line per phase, each speaker with its turn number,
    User's inputs where they land, then where it ends. A walk of one speaker through phases of
    one turn each (a chain's chunks) is one line: ``chunk 1/34 … chunk 34/34: Worker 1–34``."""
    groups: list[tuple[str | None, list[PlannedMessage]]] = []
    for m in plan.messages:
        phase = m.phase if m.turn is not None else (groups[-1][0] if groups else None)
        if not groups or phase != groups[-1][0]:
            groups.append((phase, []))
        groups[-1][1].append(m)
    lines: list[str] = []
    walk: list[tuple[str | None, PlannedMessage]] = []
    for phase, messages in groups:
        single = messages[0] if len(messages) == 1 and messages[0].turn is not None else None
        if single is not None and walk and (single.speaker != walk[-1][1].speaker or not phase):
            lines += _walk_lines(walk)
            walk = []
        if single is not None and phase:
            walk.append((phase, single))
            continue
        lines += _walk_lines(walk)
        walk = []
        lines.append(f"{phase or 'turns'}: " + ", ".join(_label(m, plan) for m in messages))
    lines += _walk_lines(walk)
    lines.append(f"ends: {plan.ends}")
    return lines


def _label(m: PlannedMessage, plan: Plan) -> str:
    if m.turn is not None:
        return f"{m.speaker} {m.turn}"
    before = sum(1 for x in plan.messages if x.turn is not None and x.message < m.message)
    return f"User input (message {m.message}, before turn {before + 1})"


def _walk_lines(walk: list[tuple[str | None, PlannedMessage]]) -> list[str]:
    if len(walk) < 3:
        return [f"{phase}: {m.speaker} {m.turn}" for phase, m in walk]
    (first_phase, first), (last_phase, last) = walk[0], walk[-1]
    return [f"{first_phase} … {last_phase}: {first.speaker} {first.turn}–{last.turn}"]
