"""The reply guard: a reply is checked before the other personas see it.

Small models repeat: the previous message, the goal, their own instructions. A reply that is
empty, mostly copied, or written as another persona is asked for again — with another seed, a
stronger repetition penalty and one line saying what was wrong — at most ``guard.retries`` times
(DSPy's ``Refine``/``BestOfN`` shape: regenerate until a check passes, within a budget). Every
attempt is an ``llm_calls`` row (the first ``turn``, the others ``retry``); the message's
``meta["guard"]`` says why each retry happened and which attempt was kept. Nothing is rewritten:
the kept reply is one the model wrote.

A structured reply whose fields repeat the schema's descriptions or hold placeholders ("1.2.3",
"[the decision]", punctuation) is a copy too (``personae/quality/placeholders.py``); runs started
before that check keep the guard they ran with (``placeholders=False``), so they replay as they ran.
A reply that repeats itself (one paragraph over and over) counts its repeats as copied; runs
started before 0.3.1 are checked without that (``self_copies=False``).

The checks are the quality scorer's own (``personae/quality/scoring.py``), so what the guard
retries is what the benchmark counts as a failure. They read only the committed transcript and
the prompt, so a resumed run checks exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from personae.config.models import GuardConfig, Persona, Scenario
from personae.llm.base import ChatMessage
from personae.orchestrator.state import Utterance
from personae.quality.placeholders import placeholder_fields
from personae.quality.scoring import copied_share, ngrams, speaks_as, words

Gram = tuple[str, ...]


@dataclass(frozen=True)
class Check:
    problems: tuple[str, ...]  # of "empty", "copy", "other_voice", "schema"
    copied: float  # share of the reply's 4-grams said or given before
    voice: str | None = None  # the persona it spoke as
    schema_error: str | None = None  # why a structured reply did not validate
    placeholders: tuple[str, ...] = ()  # fields that repeat the schema or hold a placeholder

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_meta(self, attempt: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"attempt": attempt, "problems": list(self.problems)}
        entry["copied"] = round(self.copied, 2)
        if self.voice:
            entry["voice"] = self.voice
        if self.schema_error:
            entry["schema_error"] = self.schema_error
        if self.placeholders:
            entry["placeholders"] = list(self.placeholders)
        return entry


@dataclass
class ReplyGuard:
    config: GuardConfig
    roster: tuple[str, ...]
    given: frozenset[Gram]  # goal, context and every persona's instructions
    placeholders: bool = True  # check structured fields for placeholders (runs since resume.py::REPLY_RULES_SINCE)
    self_copies: bool = True  # a reply's own repeats count as copied (runs since resume.py::SELF_COPIES_SINCE)
    _said: set[Gram] = field(default_factory=set)  # 4-grams of the transcript so far …
    _said_ids: tuple[int | None, int] = (None, 0)  # … as of (first message id, count)

    @classmethod
    def for_scenario(
        cls, scenario: Scenario, personas: Mapping[str, Persona], *, placeholders: bool = True,
        self_copies: bool = True,
    ) -> ReplyGuard:
        texts = [scenario.goal, scenario.context]
        for name in scenario.roster:
            persona = personas[name]
            texts += [persona.description, persona.system or ""]
        given: set[Gram] = set()
        for text in texts:
            given.update(ngrams(words(text)))
        return cls(scenario.guard, tuple(scenario.roster), frozenset(given), placeholders, self_copies)

    def check(
        self,
        content: str,
        persona: str,
        history: Sequence[Utterance],
        prompt: Sequence[ChatMessage],
        schema_error: str | None = None,
        fields: Mapping[str, Any] | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> Check:
        """``schema_error``: the reply was asked for under a schema and did not validate;
        ``fields``: it did, and these are its values under ``schema``."""
        if schema_error:
            return Check(("schema",), 0.0, schema_error=schema_error)
        empty = tuple(placeholder_fields(fields, schema)) if fields and self.placeholders else ()
        if empty:
            return Check(("copy",), 1.0, placeholders=empty)
        tokens = words(content)
        if len(tokens) < self.config.min_words:
            return Check(("empty",), 0.0)
        grams = ngrams(tokens)
        said = self._transcript_grams(history)
        in_prompt: set[Gram] = set()
        for message in prompt:
            in_prompt.update(ngrams(words(message.content)))
        copied = copied_share(
            grams, lambda g: g in said or g in self.given or g in in_prompt, itself=self.self_copies
        )
        voice = speaks_as(content, persona, self.roster)
        problems = tuple(
            name
            for name, failed in (("copy", copied >= self.config.copy_threshold), ("other_voice", voice))
            if failed
        )
        return Check(problems, copied, voice)

    def _transcript_grams(self, history: Sequence[Utterance]) -> set[Gram]:
        """The 4-grams of every committed message, kept between turns (the transcript only
        grows at its end; anything else starts the set again)."""
        first = history[0].id if history else None
        known_first, count = self._said_ids
        if known_first != first or count > len(history):
            self._said, count = set(), 0
        for u in history[count:]:
            self._said.update(ngrams(words(u.content)))
        self._said_ids = (first, len(history))
        return self._said


def retry_note(check: Check, persona: str) -> str:
    """One line telling the model what was wrong with its last attempt."""
    # Short: the note is re-read on every retry, and a small model heeds one plain sentence.
    if "schema" in check.problems:
        return f"Not the JSON asked for ({check.schema_error}). Reply with the JSON object only."
    if "empty" in check.problems:
        return "Too short. Write two full sentences."
    if "other_voice" in check.problems:
        return f"That spoke as {check.voice}. Write only as {persona}."
    if check.placeholders:
        named = ", ".join(dict.fromkeys(p.removeprefix("$.").split("[")[0] for p in check.placeholders))
        return f"Fields {named} only repeated the instructions or held placeholders. Write real content."
    return "That repeated earlier words. Say something new, in your own words."


def retry_options(options: Mapping[str, Any], attempt: int) -> dict[str, Any]:
    """Another seed, a stronger repetition penalty and a little more temperature per attempt."""
    changed = dict(options)
    if "seed" in changed:
        changed["seed"] = int(changed["seed"]) + 7919 * attempt
    changed["repeat_penalty"] = round(float(options.get("repeat_penalty", 1.1)) + 0.15 * attempt, 3)
    changed["temperature"] = round(min(1.1, float(options.get("temperature", 0.8)) + 0.3 * attempt), 3)
    return changed


def retry_messages(
    messages: tuple[ChatMessage, ...], note: str
) -> tuple[ChatMessage, ...]:
    """The same prompt with the note at its very end, where a small model heeds it; everything
    before it is unchanged, so a prefix-caching server re-reads only the note."""
    *head, last = messages
    if last.role != "user":
        return (*messages, ChatMessage("user", note))
    return (*head, ChatMessage("user", f"{last.content}\n{note}"))


# When no attempt passed: nothing is worse than an empty reply, then one in another voice.
SEVERITY = {"empty": 4, "schema": 3, "other_voice": 2, "copy": 1}


def best_attempt(checks: Sequence[Check]) -> int:
    """The first attempt that passed, else the least bad one (then the least copied)."""
    for index, check in enumerate(checks):
        if check.ok:
            return index
    return min(
        range(len(checks)),
        key=lambda i: (sum(SEVERITY[p] for p in checks[i].problems), checks[i].copied),
    )
