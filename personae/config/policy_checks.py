"""Cross-field checks of a scenario's policy and stop rules that a single field cannot make.

Each returns the field path of the problem, so the loader can point at the line. They catch the
mistakes that would otherwise show up only mid-run: a speaker not in the roster, a mode nobody
defined, a router rule that its own transition graph forbids, a phase that can never end and so
starves every phase after it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from personae.config.messages import did_you_mean, unknown
from personae.config.models import (
    ChainPolicy,
    ConsensusConfig,
    Loc,
    PhasesPolicy,
    Policy,
    ReflectPolicy,
    RouterPolicy,
    Scenario,
    SelfAskPolicy,
    StopCondition,
    TaskLoopPolicy,
    TerminationConfig,
)
from personae.config.modes import mode_table


@dataclass(frozen=True)
class Problem:
    loc: Loc
    problem: str
    fix: str


def consensus_refs(rules: TerminationConfig | StopCondition) -> Iterator[tuple[Loc, str]]:
    """Persona names listed under ``consensus:``, at any depth of any:/all:."""
    if isinstance(rules.consensus, ConsensusConfig):
        for j, name in enumerate(rules.consensus.personas or []):
            yield ("consensus", "personas", j), name
    for key in ("any", "all"):
        for i, item in enumerate(getattr(rules, key) or []):
            for loc, name in consensus_refs(item):
                yield (key, i, *loc), name


def scenario_problems(scenario: Scenario) -> Iterator[Problem]:
    """Every cross-field problem, the roster's first: each persona a policy or a stop rule names
    must be in the roster (the roster is who takes part); then the policy-specific checks (modes,
    router graphs). The loader reports them all, each at its line."""
    named: list[tuple[Loc, str]] = [
        (("policy", *loc), name) for loc, name in scenario.policy.persona_refs()
    ]
    named += [(("termination", *loc), name) for loc, name in consensus_refs(scenario.termination)]
    roster = scenario.roster
    for loc, speaker in named:
        if speaker not in roster:
            yield Problem(
                loc,
                unknown("persona", speaker, did_you_mean(speaker, roster)),
                f"A speaker must be one of the scenario's personas: {', '.join(roster)}. "
                "Use one of those names, or add it to `personas:`.",
            )
    yield from policy_problems(scenario)


def policy_problems(scenario: Scenario) -> list[Problem]:
    return list(_walk(scenario.policy, ("policy",), scenario.roster, set(mode_table(scenario))))


def ends_by_itself(policy: Policy) -> bool:
    """Does the policy stop proposing speakers on its own (rather than only by a stop rule)?"""
    if isinstance(policy, ReflectPolicy | ChainPolicy | SelfAskPolicy | TaskLoopPolicy):
        return True
    if isinstance(policy, PhasesPolicy):
        return not policy.repeat and all(
            p.speakers is not None or p.turns is not None or ends_by_itself(p.policy)  # type: ignore[arg-type]
            for p in policy.phases
        )
    return False  # round_robin and router go on until a stop rule (or a phase's turns) ends them


def _walk(policy: Policy, loc: Loc, roster: Sequence[str], modes: set[str]) -> Iterator[Problem]:
    if isinstance(policy, RouterPolicy):
        yield from _router(policy, loc, roster)
    if not isinstance(policy, PhasesPolicy):
        return
    for i, phase in enumerate(policy.phases):
        here = (*loc, "phases", i)
        if phase.mode is not None and phase.mode not in modes:
            close = difflib.get_close_matches(phase.mode.lower(), sorted(modes), n=1)
            guess = close[0] if close else None
            yield Problem(
                (*here, "mode"),
                f"unknown mode '{phase.mode}'" + (f" — did you mean '{guess}'?" if guess else "."),
                f"Use one of: {', '.join(sorted(modes))}, or define it under `modes:` "
                "(name: instructions).",
            )
        last = i == len(policy.phases) - 1 and not policy.repeat
        if phase.policy is None:
            continue
        if not last and phase.turns is None and not ends_by_itself(phase.policy):
            yield Problem(
                (*here, "policy"),
                f"phase '{phase.name}' never ends: a {phase.policy.type} policy goes on until a "
                "stop rule holds, so the phases after it would never run.",
                f"Add `turns: N` to phase '{phase.name}'.",
            )
        yield from _walk(phase.policy, (*here, "policy"), roster, modes)


def _router(policy: RouterPolicy, loc: Loc, roster: Sequence[str]) -> Iterator[Problem]:
    speakers = policy.speakers or list(roster)
    listed = f"The router's speakers are: {', '.join(speakers)}."
    named: list[tuple[Loc, str | None]] = [
        (("default",), policy.default),
        (("start",), policy.start),
    ]
    named += [(("rules", i, "next"), r.next) for i, r in enumerate(policy.rules)]
    for sub, name in named:
        if name is not None and name not in speakers:
            yield Problem((*loc, *sub), f"'{name}' is not one of the router's speakers.", listed)
    if len(speakers) < 2 and not policy.allow_repeat:
        yield Problem(
            (*loc, "speakers"),
            "a router with one speaker must let it speak twice in a row.",
            "Add speakers, or set `allow_repeat: true` (or use round_robin).",
        )
    graph = policy.allowed_transitions or {}
    for source, targets in graph.items():
        allowed = [t for t in targets if t in speakers and (policy.allow_repeat or t != source)]
        if source in speakers and not allowed:
            yield Problem(
                (*loc, "allowed_transitions", source),
                f"nobody may follow '{source}'"
                + ("" if policy.allow_repeat else " (allow_repeat is false)") + ".",
                "List at least one other speaker who may follow it.",
            )
    for i, rule in enumerate(policy.rules):
        sources = rule.when.persona
        for source in [sources] if isinstance(sources, str) else sources or []:
            if source in graph and rule.next not in graph[source]:
                yield Problem(
                    (*loc, "rules", i, "next"),
                    f"the rule sends '{source}' to '{rule.next}', but allowed_transitions does "
                    f"not let '{rule.next}' follow '{source}'.",
                    f"Add '{rule.next}' to allowed_transitions.{source}, or change the rule.",
                )
            elif source == rule.next and not policy.allow_repeat:
                yield Problem(
                    (*loc, "rules", i, "next"),
                    f"the rule makes '{source}' speak twice in a row, but allow_repeat is false.",
                    "Set `allow_repeat: true`, or send the turn to someone else.",
                )
