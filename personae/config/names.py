"""What a name may be, and when two names are the same name to a reader.

Persona, scenario and phase names are printed in headers, written into prompts ("Critic:") and
compared with what a model writes. So a name must be one visible line: no control characters (a
terminal would obey them), no line or paragraph separators (a reader would see two lines), and not
only invisible characters. And two spellings a reader cannot tell apart are one name:
``canonical_name`` folds case and width (NFKC: ``Ｕｓｅｒ`` is ``User``) and drops the characters
nobody sees (``U\\u200bser`` is ``User``). The reserved name ``User`` (the person taking part:
scripted inputs, --interactive) is checked that way, and the cut of replies that speak as
another persona (``personae/replies/parsing.py``) matches names that way too.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

HUMAN = "User"  # the author of scripted inputs and --interactive lines; no persona may take it

# C0 and C1 controls (tab, CR and U+0085 among them), and the line and paragraph separators.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Default-ignorable characters that are not format characters (category Cf is dropped whole):
# the combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation
# selectors, variation selectors.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
_BLANK = re.compile(r"[\s\u2800]+")  # \s covers Unicode spaces; U+2800 is the blank braille cell


_LINE_BREAKS = frozenset("\r\x85\u2028\u2029")


def _visible(text: str) -> str:
    text = _IGNORABLE.sub("", text)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


@lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    if char in _LINE_BREAKS:
        return "\n"
    if _IGNORABLE.match(char) or unicodedata.category(char) == "Cf":
        return ""
    return unicodedata.normalize("NFKC", char).casefold()


def reader_view(text: str) -> tuple[str, list[int]]:
    """``text`` folded as ``canonical_name`` folds names (every line break a ``\\n``), and for
    each position in it the position in ``text`` it came from (one more at the end), so a match
    found in the folded text can be cut from the original."""
    if text.isascii():  # nearly every reply: folding is lowercasing, positions stay
        return text.replace("\r", "\n").lower(), list(range(len(text) + 1))
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = _fold_char(char)
        folded.append(piece)
        origin.extend([index] * len(piece))
    origin.append(len(text))
    return "".join(folded), origin


def canonical_name(name: str) -> str:
    """The name as a reader sees it, for comparing: NFKC, invisible characters dropped, spaces
    collapsed, case folded."""
    folded = "".join(_fold_char(c) for c in unicodedata.normalize("NFKC", name))
    return _BLANK.sub(" ", folded).strip()


def quoted_name(name: str) -> str:
    """A name for an error message, quoted, every invisible character spelt out (``\\u200b``)
    so the reader sees why two names that look alike differ."""
    def visible(c: str) -> bool:
        return c == " " or (c.isprintable() and _fold_char(c) != "" and not _BLANK.match(c))

    return "'" + "".join(c if visible(c) else f"\\u{ord(c):04x}" for c in name) + "'"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a persona, a scenario or a phase, or None when it can."""
    bad = _FORBIDDEN.search(name)
    if bad:
        return (
            f"name {quoted_name(name)} contains the control character U+{ord(bad.group()):04X}; "
            "a name is one line of visible text"
        )
    if not _BLANK.sub("", _visible(name)):
        return f"name {quoted_name(name)} has no visible character; a name must show on screen"
    return None


def is_reserved(name: str) -> bool:
    """``User`` in any case, width or invisible-character variant."""
    return canonical_name(name) == HUMAN.casefold()
