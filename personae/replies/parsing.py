"""Turning a model's raw reply into what the other personas are shown.

Small models ramble: they think aloud, and they carry on writing the next speaker's lines. The
thinking is kept (in its own column) but hidden by default; lines written as another persona are
cut off and recorded, so the transcript holds only what the speaker said.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from personae.config.names import HUMAN, canonical_name, reader_view

# One pass over every thinking tag; a lazy ``<think>(.*?)</think>`` pattern rescans the rest of
# the reply from each unclosed opener, which is quadratic (minutes for a reply of many openers).
_THINK_TAG = re.compile(r"<(?:(thinking|think)>|/(thinking|think)\s*>)", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(thinking|think)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(thinking|think)\s*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every other way to break a line becomes \n, so "a line that starts with Critic:" means the
# same to the cut below as to whoever reads the transcript (str.splitlines, a model, a terminal).
_NEWLINES = re.compile(r"\r\n?|[\x85\u2028\u2029]")


@dataclass(frozen=True)
class ParsedReply:
    content: str
    thinking: str | None = None
    cut: str | None = None  # text after the reply began speaking as someone else


def parse_reply(raw: str, speaker: str, roster: Sequence[str]) -> ParsedReply:
    text = _CONTROL.sub("", _NEWLINES.sub("\n", raw))
    text, thinking = _split_thinking(text)
    text = _strip_own_prefix(text, speaker)
    text, cut = _cut_other_speakers(text, speaker, roster)
    return ParsedReply(content=text.strip(), thinking=thinking, cut=cut)


def _split_thinking(text: str) -> tuple[str, str | None]:
    text, parts = _remove_blocks(text)
    opened = _THINK_OPEN.search(text)
    if opened:  # never closed: the rest is thinking
        parts.append(text[opened.end() :].strip())
        text = text[: opened.start()]
    closed = _THINK_CLOSE.search(text)
    if closed:  # closed but never opened (a model that starts in thinking mode)
        parts.insert(0, text[: closed.start()].strip())
        text = text[closed.end() :]
    thinking = "\n\n".join(p for p in parts if p)
    return text, thinking or None


def _remove_blocks(text: str) -> tuple[str, list[str]]:
    """Remove each ``<think>…</think>`` block (an opener and the first closer of the same word
    after it), returning the rest and the blocks' contents — in linear time."""
    tags = list(_THINK_TAG.finditer(text))
    closers: dict[str, list[int]] = {}
    for index, tag in enumerate(tags):
        if tag.group(2):
            closers.setdefault(tag.group(2).lower(), []).append(index)
    kept: list[str] = []
    parts: list[str] = []
    position = index = 0
    while index < len(tags):
        tag = tags[index]
        same = closers.get((tag.group(1) or "").lower(), [])
        following = bisect_right(same, index) if tag.group(1) else len(same)
        if following == len(same):  # a closer, or an opener never closed: left for later
            index += 1
            continue
        closer = tags[same[following]]
        kept.append(text[position : tag.start()])
        parts.append(text[tag.end() : closer.start()].strip())
        position = closer.end()
        index = same[following] + 1
    kept.append(text[position:])
    return "".join(kept), parts


@dataclass(frozen=True)
class OtherSpeaker:
    """Where a reply starts speaking as someone else, and as whom (a roster name, or User)."""

    start: int  # index into the text given: the start of the line that speaks as ``persona``
    persona: str


def speaks_as_other(text: str, speaker: str, roster: Sequence[str]) -> OtherSpeaker | None:
    """The first line of ``text`` written as another persona (or as User), if there is one.

    Names are matched as a reader sees them (``config/names.py``): case and width folded,
    invisible characters ignored, so ``Crit\u200bic:`` and ``ＣＲＩＴＩＣ:`` are the Critic. A line
    counts when it opens with the name as a speaker label: ``Critic:``, ``**Critic**:``,
    ``[Critic]:``, ``Critic (debate):``, and the headers ``personae show`` prints,
    ``[2] Critic:`` and ``## 2. Critic``."""
    own = canonical_name(speaker)
    others = {canonical_name(n): n for n in {*roster, HUMAN}}
    others.pop(own, None)
    if not others:
        return None
    folded, origin = reader_view(text)
    match = _name_prefix(list(others)).search(folded)
    if match is None:
        return None
    # The line starts right after what precedes it, invisible characters before the label too.
    start = origin[match.start() - 1] + 1 if match.start() else 0
    return OtherSpeaker(start=start, persona=others[match.group("name")])


def _name_prefix(folded_names: Sequence[str]) -> re.Pattern[str]:
    """A speaker label at the start of a line of folded text (``names.reader_view``)."""
    space = r"[^\S\n]*+"
    alternatives = "|".join(
        r"[^\S\n]+".join(re.escape(word) for word in name.split(" "))
        for name in sorted(folded_names, key=len, reverse=True)
    )
    # After any blank space but a line break ([^\S\n]: tabs, no-break and ideographic spaces
    # too): a Markdown heading, a turn number as `show` prints it ("[2] ", "2. "), bold or a
    # bracket, the name, a closing mark, a phase in brackets, then a colon -- or, under a
    # heading, the end of the line (or " · phase"). The possessive quantifiers (*+, ++) never
    # give back characters: two adjacent runs of one class would otherwise be tried at every
    # split, which is quadratic on a long run of spaces.
    return re.compile(
        rf"^{space}(?P<heading>#++{space})?(?:(?:\[\d++\]|\d++\.){space})?"
        rf"(?:[\*_\[#]++{space})?(?P<name>{alternatives})"
        rf"{space}[\*_\]]*+{space}(\([^)\n]*+\))?{space}[\*_]*+"
        rf"(?::|(?(heading){space}(?:·[^\n]*+)?$|(?!)))",
        re.MULTILINE,
    )


def _strip_own_prefix(text: str, speaker: str) -> str:
    stripped = text.lstrip()
    folded, origin = reader_view(stripped)
    match = _name_prefix([canonical_name(speaker)]).match(folded)
    return stripped[origin[match.end()] :] if match else text


def _cut_other_speakers(text: str, speaker: str, roster: Sequence[str]) -> tuple[str, str | None]:
    found = speaks_as_other(text, speaker, roster)
    if found is None:
        return text, None
    return text[: found.start], text[found.start :].strip() or None
