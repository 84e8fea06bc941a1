"""Full-text search over transcripts and memory (SQLite FTS5, ranked by BM25).

The user's words are tried as FTS5 syntax first (phrases, OR, NOT, prefix*, NEAR); a query FTS5
cannot parse is searched again as literal words, so a search is never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from personae.store.records import MemoryHit, SearchHit

_MEMORY_SQL = (
    "SELECT n.run_id, n.id, n.kind, n.turn, "
    "snippet(memory_fts, 0, '[', ']', '…', 12) AS snip, n.text "
    "FROM memory_fts JOIN memory_nodes n ON n.id = memory_fts.rowid "
    "WHERE memory_fts MATCH :q{run} ORDER BY bm25(memory_fts) LIMIT :limit"
)

_MESSAGES_OF_RUN_SQL = (
    "SELECT m.run_id, m.turn, m.persona, "
    "snippet(messages_fts, 0, '[', ']', '…', 12) AS snip, m.content "
    "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
    "WHERE messages_fts MATCH :q AND m.run_id = :run "
    "ORDER BY bm25(messages_fts) LIMIT :limit"
)

# ORDER BY rank inside FTS5 (rank is bm25) lets it sort before the join and build snippets for
# the returned rows only: 2x faster on 1,000,000 messages (benchmarks/scale.py). With a run filter
# the plain join above stays faster.
_MESSAGES_SQL = (
    "SELECT m.run_id, m.turn, m.persona, f.snip, m.content FROM ("
    "SELECT rowid AS id, rank, snippet(messages_fts, 0, '[', ']', '…', 12) AS snip "
    "FROM messages_fts WHERE messages_fts MATCH :q ORDER BY rank LIMIT :limit"
    ") AS f JOIN messages m ON m.id = f.id ORDER BY f.rank"
)


def search_messages(
    engine: Engine, query: str, *, run_id: int | None = None, limit: int = 20
) -> list[SearchHit]:
    """Every transcript, or one run's."""
    sql = _MESSAGES_OF_RUN_SQL if run_id else _MESSAGES_SQL
    rows = _match(engine, sql, query, _params(run_id, limit))
    return [
        SearchHit(run_id=r[0], turn=r[1], persona=r[2], snippet=r[3], text=r[4]) for r in rows
    ]


def search_memory(
    engine: Engine, query: str, *, run_id: int | None = None, limit: int = 20
) -> list[MemoryHit]:
    """Summaries, facts, decisions, questions, documents."""
    sql = _MEMORY_SQL.format(run=" AND n.run_id = :run" if run_id else "")
    rows = _match(engine, sql, query, _params(run_id, limit))
    return [
        MemoryHit(run_id=r[0], node_id=r[1], kind=r[2], turn=r[3], snippet=r[4], text=r[5])
        for r in rows
    ]


def fts_query(query: str) -> str:
    """Words as FTS5 terms, quoted: the fallback for a query that is not valid FTS5 syntax."""
    words = [w.replace('"', '""') for w in query.split() if w.strip()]
    return " ".join(f'"{w}"' for w in words) or '""'


def _params(run_id: int | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if run_id:
        params["run"] = run_id
    return params


def _match(engine: Engine, sql: str, query: str, params: dict[str, Any]) -> Sequence[Any]:
    """Run a MATCH query with the user's words as FTS5 syntax, else as literal words."""
    with engine.connect() as connection:
        if query.strip():
            try:
                return connection.execute(text(sql), {**params, "q": query}).all()
            except OperationalError:  # fts5: syntax error, no such column (a stray `word:`)
                pass  # a failed SELECT leaves SQLite's read transaction usable
        return connection.execute(text(sql), {**params, "q": fts_query(query)}).all()
