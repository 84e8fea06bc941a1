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


def _name_prefix(names: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # "Critic:", "**Critic**:", "Critic (debate):", "[Critic]:" at the start of a line, after any
    # blank space but a line break ([^\S\n]: tabs, no-break and ideographic spaces too). The
    # possessive quantifiers (*+) never give back spaces: two adjacent runs of the same class
    # would otherwise be tried at every split, which is quadratic on a long run of spaces.
    space = r"[^\S\n]*+"
    return re.compile(
        rf"^{space}(?:[\*_\[#]+{space})?({alternatives})"
        rf"{space}[\*_\]]*+{space}(\([^)\n]*+\))?{space}[\*_]*+:",
        re.IGNORECASE | re.MULTILINE,
    )


def _strip_own_prefix(text: str, speaker: str) -> str:
    stripped = text.lstrip()
    match = _name_prefix([speaker]).match(stripped)
    return stripped[match.end() :] if match else text


def _cut_other_speakers(text: str, speaker: str, roster: Sequence[str]) -> tuple[str, str | None]:
    others = [n for n in {*roster, "User"} if n.lower() != speaker.lower()]
    if not others:
        return text, None
    match = _name_prefix(others).search(text)
    if not match:
        return text, None
    return text[: match.start()], text[match.start() :].strip() or None
