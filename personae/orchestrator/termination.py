"""Stop rules: small objects that look at the run and say why it should stop, if it should.

They combine like autogen-agentchat's: ``MaxTurns(12) | StopPhrase("FINAL DECISION:")`` stops at
whichever comes first, ``a & b`` only when both hold. In YAML the keys of ``termination:`` combine
with "or", and ``any:`` / ``all:`` lists nest (``make_stop_rule``). The reason a rule gives is
stored as the run's ``stop_reason``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from personae.config.models import ConsensusConfig, StopCondition, TerminationConfig
from personae.orchestrator.state import HUMAN, RunState, Utterance, persona_turns
from personae.orchestrator.verdicts import is_approval


class StopRule:
    def check(self, state: RunState) -> str | None:
        """A reason to stop (e.g. ``max_turns``), or None to go on."""
        raise NotImplementedError

    def __or__(self, other: StopRule) -> StopRule:
        return AnyOf((self, other))

    def __and__(self, other: StopRule) -> StopRule:
        return AllOf((self, other))


@dataclass(frozen=True)
class AnyOf(StopRule):
    rules: tuple[StopRule, ...]

    def check(self, state: RunState) -> str | None:
        for rule in self.rules:
            reason = rule.check(state)
            if reason:
                return reason
        return None


@dataclass(frozen=True)
class AllOf(StopRule):
    rules: tuple[StopRule, ...]

    def check(self, state: RunState) -> str | None:
        reasons = [rule.check(state) for rule in self.rules]
        return " and ".join(r for r in reasons if r) if all(reasons) else None


@dataclass(frozen=True)
class MaxTurns(StopRule):
    """Turns taken by personas; scripted or typed input from User does not use them up."""

    turns: int

    def check(self, state: RunState) -> str | None:
        if len(state.history) < self.turns:  # persona turns are fewer still: skip the count
            return None
        return "max_turns" if persona_turns(state.history) >= self.turns else None


@dataclass(frozen=True)
class TurnCap(StopRule):
    """Every message of the run, whoever wrote it, against a hard cap.

    ``MaxTurns`` counts persona turns only, so input never uses them up; this rule counts
    everything, so a run ends whatever a policy or a name does (a persona once could be called
    ``User`` and never be counted). ``for_run`` sets the cap where a run within its limits never
    reaches it: every persona turn, one typed line before each, and every scripted input."""

    turns: int

    @classmethod
    def for_run(cls, max_turns: int, inputs: int) -> TurnCap:
        return cls(2 * max_turns + inputs)

    def check(self, state: RunState) -> str | None:
        if len(state.history) >= self.turns:
            return f"turn_cap ({self.turns} messages in all, 2 × max_turns + scripted inputs)"
        return None


@dataclass(frozen=True)
class StopPhrase(StopRule):
    phrase: str

    def check(self, state: RunState) -> str | None:
        if state.history and self.phrase.lower() in state.history[-1].content.lower():
            return "stop_phrase"
        return None


@dataclass(frozen=True)
class Approved(StopRule):
    """The last persona message is a reflect verdict that approves."""

    def check(self, state: RunState) -> str | None:
        last = next((u for u in reversed(state.history) if u.persona != HUMAN), None)
        return "approved" if last is not None and is_approval(last) else None


@dataclass(frozen=True)
class Consensus(StopRule):
    """Every listed persona has spoken, and its last message agrees: it carries the marker, or
    its structured reply says ``agree: true`` (or ``approve: true``)."""

    personas: tuple[str, ...]
    marker: str = "I AGREE"

    def check(self, state: RunState) -> str | None:
        last: dict[str, Utterance] = {}
        for u in state.history:
            last[u.persona] = u
        if all(name in last and self._agrees(last[name]) for name in self.personas):
            return "consensus"
        return None

    def _agrees(self, u: Utterance) -> bool:
        data = u.structured if isinstance(u.structured, dict) else {}
        if data.get("agree") is True or data.get("approve") is True:
            return True
        return self.marker.casefold() in u.content.casefold()


@dataclass(frozen=True)
class TokenBudget(StopRule):
    """Total prompt tokens the server evaluated (``runs.evaluated_tokens``), over every call."""

    tokens: int

    def check(self, state: RunState) -> str | None:
        return "token_budget" if state.evaluated_tokens >= self.tokens else None


@dataclass(frozen=True)
class Timeout(StopRule):
    """Seconds since this process started (or resumed) the run: a resumed run gets a new clock."""

    seconds: float

    def check(self, state: RunState) -> str | None:
        elapsed = time.monotonic() - state.started_monotonic
        return "timeout" if state.started_monotonic and elapsed >= self.seconds else None


def _rules(config: TerminationConfig | StopCondition, roster: list[str]) -> list[StopRule]:
    rules: list[StopRule] = []
    if config.max_turns is not None:
        rules.append(MaxTurns(config.max_turns))
    if config.stop_phrase:
        rules.append(StopPhrase(config.stop_phrase))
    if config.approved:
        rules.append(Approved())
    if config.consensus:
        consensus = (
            config.consensus
            if isinstance(config.consensus, ConsensusConfig)
            else ConsensusConfig.model_validate({})
        )
        rules.append(Consensus(tuple(consensus.personas or roster), consensus.marker))
    if config.token_budget is not None:
        rules.append(TokenBudget(config.token_budget))
    if config.timeout is not None:
        rules.append(Timeout(config.timeout))
    if config.any:
        rules.append(AnyOf(tuple(_one(item, roster) for item in config.any)))
    if config.all:
        rules.append(AllOf(tuple(_one(item, roster) for item in config.all)))
    return rules


def _one(config: StopCondition, roster: list[str]) -> StopRule:
    rules = _rules(config, roster)
    return rules[0] if len(rules) == 1 else AnyOf(tuple(rules))


def make_stop_rule(
    config: TerminationConfig, *, max_turns: int | None = None, roster: list[str] | None = None
) -> StopRule:
    """The scenario's stop rules, "or"-ed; ``max_turns`` (e.g. from --max-turns) wins over the
    file's. ``roster``: who must agree for ``consensus: true``."""
    if max_turns is not None:
        config = config.model_copy(update={"max_turns": max_turns})
    rules = _rules(config, roster or [])
    return rules[0] if len(rules) == 1 else AnyOf(tuple(rules))
