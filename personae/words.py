"""Numbers in sentences: ``1 turn``, ``2 turns``. One place, so no message says ``1 turns``."""

from __future__ import annotations

def plural(noun: str) -> str:
    """English plural of the nouns our messages count: ``reply`` → ``replies``, ``retry`` →
    ``retries`` (a consonant before the y), else an ``s``."""
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def count(number: int, noun: str) -> str:
    """``count(1, "turn")`` → ``1 turn``; ``count(3, "turn")`` → ``3 turns``."""
    return f"{number} {noun if number == 1 else plural(noun)}"
