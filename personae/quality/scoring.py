"""Is a deliberation saying anything? Scores for every persona reply of a run.

Token counts say what a run cost; these say whether it was worth it. Each reply is checked for
the failures small models are known for (MAST, Cemri et al. 2025: step repetition, disobeying the
role, speaking as another agent) with rules simple enough to read and to argue with:

- *empty*: fewer than 5 words;
- *copy*: half or more of its word 4-grams already appeared earlier — in another message, in
  the goal, context, documents or persona instructions the model was given (parroting the prompt),
  or earlier in the reply itself (one paragraph said four times: a small model's loop); or, for a structured reply, a field that repeats its schema's description or holds a placeholder
  (``placeholders.py``);
- *off topic*: fewer than 2 content words shared with the goal, context and documents;
- *other voice*: it speaks as another persona of the roster;
- *cut*: generation stopped at ``num_predict``;
- *contract*: where a persona's role can be checked, it did what it says — a persona whose
  instructions (or output template) name the scenario's stop phrase or ``FINAL DECISION:`` closes
  with a line starting with it; one asked for numbered steps gives them.

A reply is *good* when none of the first four holds. The scorer reads plain values, so the same
code scores Personae's runs (``from_store``) and the transcripts of other frameworks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from personae.quality.placeholders import placeholder_fields
from personae.quality.text import normalize

MIN_WORDS = 5
COPY_FRACTION = 0.5
MIN_SHARED_CONTENT = 2
NGRAM = 4
FAILURES = ("empty", "copy", "off_topic", "other_voice")

_WORD = re.compile(r"\w+(?:[.,'’]\w+)*", re.UNICODE)
_NUMBERED = re.compile(r"^\s*(?:step\s*)?\d{1,2}\s*[.):]\s*\S", re.IGNORECASE | re.MULTILINE)

# Words that carry no topic: English and Russian (a built-in scenario is in Russian).
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could did do does doing don't down
    during each either else even ever every few for from further get gets got had has have having
    he her here hers herself him himself his how however i if in into is isn't it it's its itself
    just let like make makes many may me might more most much must my myself need needs no nor
    not now of off often on once one only or other others our ours ourselves out over own per
    rather really same say says see seem she should so some such than that that's the their
    theirs them themselves then there these they this those through thus to too under until up
    upon us use used using very via was we well were what when where whether which while who
    whom whose why will with within without would yes yet you your yours yourself yourselves
    able across already although among another anything around away back become best better
    come could'nt done each enough etc first give go going good great keep know last least less
    made mean next new old put right second shall since still sure take tell think three two
    way ways want wants what's work works year years
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне
    было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него
    до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для
    мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того
    потому этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда зачем
    всех никогда можно при наконец два об другой хоть после над больше тот через эти нас про всего
    них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя
    такой им более всегда конечно всю между это эта эти также нужно
    """.split()
)


@dataclass(frozen=True)
class Reply:
    """One persona reply, as the scorer needs it."""

    persona: str
    content: str
    turn: int = 0
    done_reason: str | None = None  # "length": cut at num_predict
    prompt: str = ""  # the prompt it answered, where stored: parroting it is copying too
    fields: Mapping[str, Any] | None = None  # a structured reply's values …
    schema: Mapping[str, Any] | None = None  # … and the schema it was asked for under


@dataclass(frozen=True)
class Deliberation:
    """What a run was about, who took part and what they said."""

    goal: str
    context: str = ""
    documents: tuple[str, ...] = ()
    instructions: dict[str, str] = field(default_factory=dict)  # persona -> its instructions
    replies: tuple[Reply, ...] = ()
    others: tuple[str, ...] = ()  # earlier messages that are not persona replies (User lines)
    stop_phrase: str | None = "FINAL DECISION:"
    # What a persona's role says it will do, where it says more than its instructions (an
    # output template); defaults to the instructions.
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def roster(self) -> tuple[str, ...]:
        return tuple(self.instructions)


@dataclass(frozen=True)
class ReplyScore:
    reply: Reply
    words: int
    copied: float  # share of its 4-grams seen before
    shared_content: int  # content words in common with goal, context, documents
    empty: bool
    copy: bool
    off_topic: bool
    other_voice: str | None  # the persona it spoke as
    cut: bool
    contract: bool | None  # None: no checkable contract for this persona
    contract_kind: str | None = None  # "closing" (ends with the stop phrase) | "numbered"

    @property
    def good(self) -> bool:
        return not (self.empty or self.copy or self.off_topic or self.other_voice)

    @property
    def failures(self) -> list[str]:
        return [name for name in FAILURES if getattr(self, name)]


@dataclass(frozen=True)
class Summary:
    replies: int
    good: int
    counts: dict[str, int]  # each failure kind, and "cut"
    contracts: int  # replies with a checkable contract
    contracts_kept: int

    @property
    def good_ratio(self) -> float:
        return self.good / self.replies if self.replies else 0.0

    @property
    def contract_rate(self) -> float | None:
        return self.contracts_kept / self.contracts if self.contracts else None


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text).lower())


def stem(word: str) -> str:
    """A crude stem that works well enough for English and Russian: cache/caching/cached,
    продукт/продукта share their first five letters."""
    return word[:5] if len(word) > 5 else word


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in words(text) if _is_content(w)}


def _is_content(word: str) -> bool:
    if word in STOPWORDS:
        return False
    return len(word) >= 2 if word.isdigit() else len(word) >= 3


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def copied_share(
    grams: Sequence[tuple[str, ...]], said: Callable[[tuple[str, ...]], bool], *, itself: bool = True
) -> float:
    """The share of ``grams`` said before: ``said(gram)``, or (``itself``) earlier in the same
    reply — a reply that loops over one paragraph copies itself as surely as it copies others."""
    if not grams:
        return 0.0
    earlier: set[tuple[str, ...]] = set()
    copied = 0
    for gram in grams:
        copied += said(gram) or (itself and gram in earlier)
        earlier.add(gram)
    return copied / len(grams)


def speaks_as(content: str, speaker: str, roster: Iterable[str]) -> str | None:
    """The other persona a reply speaks as: a line that opens with their name as a speaker tag
    (``Critic:``, ``**Critic**:``, ``[Critic]:``, ``## 2. Critic``), or the reply introducing
    itself as them (``As the Critic, I…``, ``I am the Critic``)."""
    text = normalize(content)
    for name in roster:
        if name.lower() == speaker.lower():
            continue
        n = re.escape(normalize(name))
        tag = rf"^[^\S\n]*(?:[#*_\[]+[^\S\n]*)?(?:\d+[.)]?[^\S\n]*)?\[?{n}\]?[*_]*(?:[^\S\n]*\([^)\n]*\))?[^\S\n]*[*_]*:"
        heading = rf"^[^\S\n]*#+[^\S\n]*(?:\d+[.)]?[^\S\n]*)?{n}[^\S\n]*$"
        intro = rf"\b(?:as (?:the )?{n},? (?:i|we)\b|i am (?:the )?{n}\b|i'm (?:the )?{n}\b|this is (?:the )?{n}\b)"
        for pattern in (tag, heading, intro):
            if re.search(pattern, text, re.IGNORECASE | re.MULTILINE):
                return name
    return None


CLOSING = "FINAL DECISION:"


def contract_of(role: str, stop_phrase: str | None) -> tuple[str, str | None] | None:
    """What can be checked of a persona's role, read from its own instructions: ("closing",
    the phrase its last line starts with) or ("numbered", None)."""
    for phrase in (stop_phrase, CLOSING):
        if phrase and phrase.lower() in role.lower():
            return "closing", phrase
    if re.search(r"\bnumbered\b|пронумерованн", role, re.IGNORECASE):
        return "numbered", None
    return None


def keeps_contract(kind: str, content: str, phrase: str | None) -> bool:
    if kind == "closing":
        lines = [line.strip(" *_#>\t") for line in content.strip().splitlines() if line.strip()]
        return bool(lines) and bool(phrase) and lines[-1].upper().startswith((phrase or "").upper())
    return len(_NUMBERED.findall(content)) >= 2


def score(deliberation: Deliberation) -> list[ReplyScore]:
    """Score every persona reply in order; each is compared with what came before it."""
    topic = content_stems(
        "\n".join([deliberation.goal, deliberation.context, *deliberation.documents])
    )
    seen: set[tuple[str, ...]] = set()
    for text in (
        deliberation.goal, deliberation.context, *deliberation.documents,
        *deliberation.instructions.values(), *deliberation.others,
    ):
        seen.update(ngrams(words(text)))
    roster = deliberation.roster
    scores = []
    for reply in deliberation.replies:
        tokens = words(reply.content)
        grams = ngrams(tokens)
        given = seen | set(ngrams(words(reply.prompt))) if reply.prompt else seen
        copied = copied_share(grams, given.__contains__)
        empty_fields = placeholder_fields(reply.fields, reply.schema) if reply.fields else []
        if empty_fields:
            copied = 1.0
        shared = len(content_stems(reply.content) & topic)
        role = deliberation.roles.get(reply.persona) or deliberation.instructions.get(reply.persona, "")
        kind, phrase = contract_of(role, deliberation.stop_phrase) or (None, None)
        scores.append(
            ReplyScore(
                reply=reply,
                words=len(tokens),
                copied=copied,
                shared_content=shared,
                empty=len(tokens) < MIN_WORDS,
                copy=bool(empty_fields) or (bool(grams) and copied >= COPY_FRACTION),
                off_topic=shared < MIN_SHARED_CONTENT,
                other_voice=speaks_as(reply.content, reply.persona, roster),
                cut=reply.done_reason == "length",
                contract=None if kind is None else keeps_contract(kind, reply.content, phrase),
                contract_kind=kind,
            )
        )
        seen.update(grams)
    return scores


def summarize(scores: Sequence[ReplyScore]) -> Summary:
    counts = {name: sum(bool(getattr(s, name)) for s in scores) for name in (*FAILURES, "cut")}
    checked = [s for s in scores if s.contract is not None]
    return Summary(
        replies=len(scores),
        good=sum(s.good for s in scores),
        counts=counts,
        contracts=len(checked),
        contracts_kept=sum(bool(s.contract) for s in checked),
    )
