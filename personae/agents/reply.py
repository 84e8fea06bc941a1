"""Turning a model's raw reply into what the other personas are shown.

Small models ramble: they think aloud, and they carry on writing the next speaker's lines. The
thinking is kept (in its own column) but hidden by default; lines written as another persona are
cut off and recorded, so the transcript holds only what the speaker said.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_THINK_BLOCK = re.compile(r"<(thinking|think)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(thinking|think)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(thinking|think)\s*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class ParsedReply:
    content: str
    thinking: str | None = None
    cut: str | None = None  # text after the reply began speaking as someone else


def parse_reply(raw: str, speaker: str, roster: Sequence[str]) -> ParsedReply:
    text = _CONTROL.sub("", raw)
    text, thinking = _split_thinking(text)
    text = _strip_own_prefix(text, speaker)
    text, cut = _cut_other_speakers(text, speaker, roster)
    return ParsedReply(content=text.strip(), thinking=thinking, cut=cut)


def _split_thinking(text: str) -> tuple[str, str | None]:
    parts = [m.group(2).strip() for m in _THINK_BLOCK.finditer(text)]
    text = _THINK_BLOCK.sub("", text)
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


def _name_prefix(names: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # "Critic:", "**Critic**:", "Critic (debate):", "[Critic]:" at the start of a line
    return re.compile(
        rf"^[ \t]*[\*_\[#]*[ \t]*({alternatives})[ \t]*[\*_\]]*[ \t]*(\([^)\n]*\))?[ \t]*[\*_]*:",
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
