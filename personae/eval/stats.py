"""The statistics of a comparison, from scipy rather than formulas typed by hand.

- Accuracy with a 95% Wilson score interval (``binomtest(...).proportion_ci(method="wilson")``):
  unlike the normal approximation it stays inside [0, 1] and is honest at 0 or n correct.
- Crew against a baseline on the same items: the exact McNemar test, a two-sided binomial test
  (p = 1/2) on the discordant pairs — items one method got right and the other wrong. Items both
  got right or both wrong say nothing about which is better.
- Flips, for a crew: did the final answer differ from the first speaker's first answer, and
  did the change go wrong→right (the crew corrected) or right→wrong (it conformed or was talked
  out of a right answer)?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from scipy.stats import binomtest


@dataclass(frozen=True)
class Accuracy:
    correct: int
    items: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.correct / self.items if self.items else 0.0


def accuracy(outcomes: Sequence[bool], confidence: float = 0.95) -> Accuracy:
    n, k = len(outcomes), sum(bool(o) for o in outcomes)
    if n == 0:
        return Accuracy(0, 0, 0.0, 1.0)
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Accuracy(k, n, float(interval.low), float(interval.high))


@dataclass(frozen=True)
class Paired:
    """``a`` against ``b`` on the same items: ``a_only`` right only with a, ``b_only`` only with b."""

    a_only: int
    b_only: int
    p_value: float


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> Paired:
    """The exact McNemar test of two methods' correctness on the same items, in the same order."""
    if len(a) != len(b):
        raise ValueError("paired outcomes must cover the same items")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return Paired(a_only, b_only, p)


@dataclass(frozen=True)
class Flips:
    """How a crew's final answers relate to its first speaker's first answers."""

    items: int  # items with a first answer to compare
    changed: int  # final answer differs from the first
    wrong_to_right: int
    right_to_wrong: int
    wrong_to_wrong: int  # changed, and wrong both times


def flips(first: Sequence[tuple[str, bool]], final: Sequence[tuple[str, bool]],
          same: Sequence[bool]) -> Flips:
    """``first``/``final``: (answer, correct) per item; ``same``: whether the two answers are the
    same answer (as the task's check compares them)."""
    changed = [(f, g) for f, g, s in zip(first, final, same) if not s]
    return Flips(
        items=len(first),
        changed=len(changed),
        wrong_to_right=sum(1 for f, g in changed if not f[1] and g[1]),
        right_to_wrong=sum(1 for f, g in changed if f[1] and not g[1]),
        wrong_to_wrong=sum(1 for f, g in changed if not f[1] and not g[1]),
    )


def median_tokens(tokens: Sequence[int]) -> float:
    return float(median(tokens)) if tokens else 0.0
