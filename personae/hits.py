"""Search hits, grouped: the same text found in several places is one hit with a list of where.

Every run imports its scenario's documents again, and a fork copies its parent's turns, so a
plain ranked list repeats one passage once per run. Hits keep their rank order; a group stands at
the rank of its best hit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

H = TypeVar("H")


@dataclass(frozen=True)
class Grouped(Generic[H]):
    first: H  # the best-ranked hit of the group
    hits: tuple[H, ...]  # all of them, best first (``first`` included)

    @property
    def count(self) -> int:
        return len(self.hits)


def group_hits(hits: Sequence[H], key: Callable[[H], Hashable], limit: int) -> list[Grouped[H]]:
    """At most ``limit`` groups of ``hits`` that share ``key`` (their kind and whole text)."""
    order: list[Hashable] = []
    members: dict[Hashable, list[H]] = {}
    for hit in hits:
        k = key(hit)
        if k not in members:
            order.append(k)
            members[k] = []
        members[k].append(hit)
    return [Grouped(members[k][0], tuple(members[k])) for k in order[:limit]]
