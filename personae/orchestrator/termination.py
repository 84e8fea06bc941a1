"""Stop rules: small objects that look at the run and say why it should stop, if it should.

They combine like autogen-agentchat's: ``MaxTurns(12) | StopPhrase("FINAL DECISION:")`` stops at
whichever comes first, ``a & b`` only when both hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from personae.config.models import TerminationConfig
from personae.orchestrator.state import RunState


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
    turns: int

    def check(self, state: RunState) -> str | None:
        return "max_turns" if state.turn >= self.turns else None


@dataclass(frozen=True)
class StopPhrase(StopRule):
    phrase: str

    def check(self, state: RunState) -> str | None:
        if state.history and self.phrase.lower() in state.history[-1].content.lower():
            return "stop_phrase"
        return None


def make_stop_rule(config: TerminationConfig, *, max_turns: int | None = None) -> StopRule:
    rule: StopRule = MaxTurns(max_turns or config.max_turns)
    if config.stop_phrase:
        rule = rule | StopPhrase(config.stop_phrase)
    return rule
