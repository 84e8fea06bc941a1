"""The router policy: rules map what was just said to who speaks next.

Rule evaluation is pure (a function of the transcript), so a resumed run routes exactly as the
original would have. Where no rule matches and ``selector: llm`` is set, the router does not call
the model itself: it returns the allowed candidates in ``TurnPlan.choices`` with the fallback as
``TurnPlan.persona``, and the run loop asks the selector (``orchestrator/selector.py``). Whatever
decided the turn is recorded in ``messages.meta["route"]``.

Constraints apply to every route: ``allow_repeat: false`` keeps a persona from speaking twice in a
row and ``allowed_transitions`` says who may follow whom. A rule whose target is not allowed after
the previous speaker is skipped, and the next rule is tried.

A ``when.regex`` runs on text the model wrote, and a pattern such as ``(a+)+$`` backtracks for
hours on forty ``a``s and a ``!``; the ``regex`` package stops a match after ``REGEX_TIMEOUT_S``
and the run ends failed, naming the rule (resumable with the rule fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

import regex

from personae.config.models import RouterPolicy, RouteWhen
from personae.errors import UserError
from personae.orchestrator.state import HUMAN, TurnPlan, Utterance, persona_turns

REGEX_TIMEOUT_S = 0.5  # a sane pattern matches a reply in microseconds


class RuleTimedOut(UserError):
    """A router rule's regex ran past ``REGEX_TIMEOUT_S`` on a message."""


def rule_matches(when: RouteWhen, said: Utterance | None) -> bool:
    """Every condition given in ``when`` holds for the message just said."""
    if said is None:
        return False
    if when.persona is not None:
        names = [when.persona] if isinstance(when.persona, str) else when.persona
        if said.persona not in names:
            return False
    if when.contains is not None:
        words = [when.contains] if isinstance(when.contains, str) else when.contains
        text = said.content.casefold()
        if not any(word.casefold() in text for word in words):
            return False
    if when.regex is not None and regex.search(when.regex, said.content, timeout=REGEX_TIMEOUT_S) is None:
        return False
    if when.phase is not None:
        phase = said.phase or ""
        if when.phase != phase and when.phase not in phase.split("/"):
            return False
    return True


class Router:
    def __init__(self, config: RouterPolicy, roster: Sequence[str]) -> None:
        self.config = config
        self.speakers = list(config.speakers or roster)
        self.default = config.default or self.speakers[0]

    def allowed_after(self, previous: str | None) -> list[str]:
        """Who may speak after ``previous`` (None: nobody has spoken yet)."""
        graph = self.config.allowed_transitions or {}
        allowed = [
            s
            for s in self.speakers
            if (self.config.allow_repeat or s != previous)
            and (previous not in graph or s in graph[previous])
        ]
        return allowed or list(self.speakers)  # a dead end must not end the run; checked at load

    def next_speaker(self, history: Sequence[Utterance], since: int = 0) -> TurnPlan | None:
        if self.config.start is not None and persona_turns(history[since:]) == 0:
            return TurnPlan(self.config.start, meta={"route": {"by": "start"}})
        said = history[-1] if history else None
        previous = next((u.persona for u in reversed(history) if u.persona != HUMAN), None)
        candidates = self.allowed_after(previous)
        for index, rule in enumerate(self.config.rules):
            try:
                matched = rule.next in candidates and rule_matches(rule.when, said)
            except TimeoutError:
                assert said is not None
                raise RuleTimedOut(
                    f"Router rule {index + 1} (policy.rules[{index}].when.regex: "
                    f"{rule.when.regex!r}) ran longer than {REGEX_TIMEOUT_S} s on the message of "
                    f"turn {said.turn} ({said.persona!r}, {len(said.content)} characters) and was "
                    "stopped: the pattern backtracks catastrophically on such text (nested "
                    "repetition like (a+)+ is the usual cause). Rewrite it in the scenario file, "
                    "then continue the run with the fixed file: personae resume RUN --scenario FILE."
                ) from None
            if matched:
                return TurnPlan(rule.next, meta={"route": {"by": "rule", "rule": index}})
        fallback = self.default if self.default in candidates else candidates[0]
        if self.config.selector == "llm" and len(candidates) > 1:
            return TurnPlan(fallback, meta={"route": {"by": "selector"}}, choices=tuple(candidates))
        by = "default" if fallback == self.default else "first_allowed"
        return TurnPlan(fallback, meta={"route": {"by": by}})

    def finish_reason(self, history: Sequence[Utterance]) -> str:
        """A router always names someone; it ends only inside a phase with ``turns``."""
        return "phases_complete"
