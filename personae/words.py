"""Numbers in sentences: ``1 turn``, ``2 turns``. One place, so no message says ``1 turns``."""

from __future__ import annotations

_IRREGULAR = {"reply": "replies", "summary": "summaries", "query": "queries"}


def plural(noun: str) -> str:
    return _IRREGULAR.get(noun, noun + "s")


def count(number: int, noun: str) -> str:
    """``count(1, "turn")`` → ``1 turn``; ``count(3, "turn")`` → ``3 turns``."""
    return f"{number} {noun if number == 1 else plural(noun)}"
