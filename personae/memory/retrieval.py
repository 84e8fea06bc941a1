"""Ranking memory items by relevance: SQLite FTS5 with BM25, over one run's items only.

The ranking runs in a private in-memory FTS5 table filled with the candidates, not in the shared
``memory_fts`` index: BM25's term statistics then come from this run's memory alone, so the same
run state always ranks the same way — whatever other runs the database holds — and a resumed or
replayed run rebuilds the very same memory block (same prompt, same hash, same cache prefix).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

MAX_TERMS = 48
# Words too common to say anything about relevance (English and Russian; the rest are rare enough).
STOPWORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in into is it its
    of on or our so that the their them then there these they this to was we were what when
    which who will with would you your not no yes should could may might must also than
    и в во на с со по к ко о об от до из за для что это как но или не ни же бы ли то""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str, limit: int = MAX_TERMS) -> list[str]:
    """Distinct content words of ``text``, later words first (the last messages matter most)."""
    seen: dict[str, None] = {}
    for word in reversed(_WORD.findall(text.lower())):
        if len(word) < 3 or word in STOPWORDS:
            continue
        seen.setdefault(word, None)
        if len(seen) >= limit:
            break
    return list(seen)


def bm25_scores(query: str, candidates: Sequence[tuple[int, str]]) -> dict[int, float]:
    """BM25 of the candidates matching any term of ``query`` (lower is better, as FTS5 gives
    it; negative for a match), rounded so float noise never reorders equals."""
    terms = query_terms(query)
    if not terms or not candidates:
        return {}
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(
            "CREATE VIRTUAL TABLE items USING fts5(text, "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        connection.executemany("INSERT INTO items(rowid, text) VALUES (?, ?)", list(candidates))
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        rows = connection.execute(
            "SELECT rowid, bm25(items) FROM items WHERE items MATCH ?", (match,)
        ).fetchall()
    finally:
        connection.close()
    return {rowid: round(score, 9) for rowid, score in rows}


def rank(query: str, candidates: Sequence[tuple[int, str]]) -> list[int]:
    """Candidate ids, most relevant first (BM25); those matching no term keep their given order,
    after the matches. Ties go to the given order too, so callers pass newest first."""
    order = {node_id: i for i, (node_id, _) in enumerate(candidates)}
    scores = bm25_scores(query, candidates)
    matched = sorted(scores, key=lambda rowid: (scores[rowid], order[rowid]))
    found = set(matched)
    return matched + [node_id for node_id, _ in candidates if node_id not in found]
