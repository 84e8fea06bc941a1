"""The turn plan of a scenario, before any model is asked: who speaks at each turn, in which
phase, where User's scripted inputs land, and where ``max_turns`` stops it (``personae validate``).

Policies are functions of the committed transcript, so the plan is the policy asked, turn after
turn, about a transcript of placeholder replies — the very code a run uses. Where a model decides
(a router's open choice) the plan stops and says so; a reflect loop is planned as if no reviewer
approves early.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from personae.config.loader import LoadedScenario
from personae.config.modes import mode_table
from personae.orchestrator.inputs import due_inputs
from personae.orchestrator.policies import make_policy
from personae.orchestrator.shortfall import shortfall
from personae.orchestrator.state import HUMAN, Utterance, persona_turns

MOST = 500  # a plan longer than this is cut: no one reads it, and repeat: true never ends


@dataclass(frozen=True)
class PlannedMessage:
    message: int  # its number in the transcript
    turn: int | None  # the persona turn it is (None: a User input)
    speaker: str
    phase: str | None


@dataclass
class Plan:
    messages: list[PlannedMessage] = field(default_factory=list)
    ends: str = ""  # why the plan stops: "max_turns (in phase debate)", "phases_complete" …
    warnings: list[str] = field(default_factory=list)


def turn_plan(loaded: LoadedScenario, max_turns: int | None = None) -> Plan:
    scenario = loaded.scenario
    limit = max_turns or scenario.termination.max_turns
    policy = make_policy(scenario.policy, scenario.roster, mode_table(scenario))
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
        history.append(Utterance(len(history) + 1, speaker.persona, speaker.phase, f"(turn {taken + 1})"))
        plan.messages.append(PlannedMessage(len(history), taken + 1, speaker.persona, speaker.phase))
    spoken = [m for m in plan.messages if m.turn is not None]
    twice = sorted({b.speaker for a, b in zip(spoken, spoken[1:]) if a.speaker == b.speaker})
    if twice:
        plan.warnings.append(
            f"{', '.join(twice)} speak{'s' if len(twice) == 1 else ''} twice in a row: a small "
            "model then repeats itself. Put another persona between, or fewer rounds."
        )
    short = shortfall(scenario.policy, limit)
    if short is not None:
        plan.warnings.append(short.message())
    return plan


def plan_lines(plan: Plan) -> list[str]:
    """The plan as a reader takes it in: one line per phase, each speaker with its turn number,
    User's inputs where they land, then where it ends."""
    lines: list[str] = []
    current: tuple[str | None, list[str]] | None = None
    for m in plan.messages:
        if m.turn is None:
            before = sum(1 for x in plan.messages if x.turn is not None and x.message < m.message)
            label = f"User input (message {m.message}, before turn {before + 1})"
        else:
            label = f"{m.speaker} {m.turn}"
        phase = m.phase if m.turn is not None else (current[0] if current else None)
        if current is None or phase != current[0]:
            current = (phase, [])
            lines.append("")
        current[1].append(label)
        lines[-1] = f"{current[0] or 'turns'}: " + ", ".join(current[1])
    lines.append(f"ends: {plan.ends}")
    return lines
