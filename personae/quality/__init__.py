"""Deliberation quality: is each reply on topic, new, in its persona's own voice?"""

from personae.quality.scoring import (
    FAILURES,
    Deliberation,
    Reply,
    ReplyScore,
    Summary,
    score,
    speaks_as,
    summarize,
)

__all__ = [
    "FAILURES",
    "Deliberation",
    "Reply",
    "ReplyScore",
    "Summary",
    "score",
    "speaks_as",
    "summarize",
]
