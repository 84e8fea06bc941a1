"""Datasette metadata for a Personae database: what each table and column means, and a few
canned queries, so ``datasette personae.db --metadata m.json`` explains the data it shows.

The descriptions are the models' own column comments (``store/models.py``), the same text that
generates docs/storage.md, so the three never disagree.
"""

from __future__ import annotations

from typing import Any

from personae.store.models import Base

QUERIES: dict[str, dict[str, str]] = {
    "tokens_per_persona": {
        "title": "Tokens per persona",
        "description": "Model calls and tokens for each persona (and for collapses and speaker "
        "selection, whose calls name the persona the model played).",
        "sql": "select run_id, coalesce(persona, '(' || purpose || ')') as persona, count(*) as calls, "
        "sum(prompt_tokens) as prompt_tokens, sum(evaluated_tokens) as evaluated_tokens, "
        "sum(completion_tokens) as completion_tokens from llm_calls "
        "group by run_id, 2 order by run_id desc, evaluated_tokens desc",
    },
    "cache_reuse_per_call": {
        "title": "Cache reuse per call",
        "description": "Prompt tokens the server reused from its cache against those it had to "
        "evaluate: the number the prompt layouts exist to keep high.",
        "sql": "select id, run_id, turn, purpose, persona, prompt_tokens, evaluated_tokens, "
        "prompt_tokens - evaluated_tokens as reused_tokens, "
        "round(100.0 * (prompt_tokens - evaluated_tokens) / max(prompt_tokens, 1), 1) as reused_percent "
        "from llm_calls order by id desc",
    },
    "facts_still_valid": {
        "title": "Facts still valid",
        "description": "Facts and decisions no later item has superseded or contradicted.",
        "sql": "select run_id, id, kind, text, valid_from, turn as made_after_turn from memory_nodes "
        "where kind in ('fact', 'decision') and valid_to is null order by run_id desc, id",
    },
}


def metadata(database: str) -> dict[str, Any]:
    """Metadata for the database Datasette names ``database`` (the file name without ``.db``)."""
    tables: dict[str, Any] = {}
    for table in Base.metadata.sorted_tables:
        entry: dict[str, Any] = {
            "columns": {c.name: c.comment for c in table.columns if c.comment},
        }
        if table.comment:
            entry["description"] = table.comment
        if table.name == "messages":
            entry["fts_table"] = "messages_fts"
            entry["fts_pk"] = "id"
        if table.name == "memory_nodes":
            entry["fts_table"] = "memory_fts"
            entry["fts_pk"] = "id"
        tables[table.name] = entry
    return {
        "title": "Personae",
        "description": "Deliberations: runs, transcripts, every model call and the memory graph. "
        "What each column is for: personae/store/models.py and docs/storage.md.",
        "databases": {database: {"tables": tables, "queries": QUERIES}},
    }
