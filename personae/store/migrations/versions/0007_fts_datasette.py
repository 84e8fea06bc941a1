"""The full-text indexes in the form Datasette and sqlite-utils recognise.

0001 and 0002 declared ``messages_fts`` and ``memory_fts`` with ``content='messages'`` (single
quotes). SQLite reads both quotings the same, but Datasette and sqlite-utils find a table's FTS
index by looking for ``content="messages"`` or ``content=[messages]`` in its SQL: with single
quotes ``datasette personae.db`` showed no search box and ``sqlite-utils search personae.db
messages WORD`` answered "Table 'messages' is not configured for full-text search". This revision
re-declares both indexes with double quotes, columns, tokenizer and triggers unchanged, and fills
them again from their tables (memory_fts still leaves out message and persona nodes).

Revision ID: 0007
Revises: 0003
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Kinds that are not indexed in memory_fts (as in 0002): message text is already in messages_fts,
# and a persona node is only a name.
UNINDEXED_KINDS = "('message', 'persona')"
TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"


def _messages_fts(quote: str) -> list[str]:
    return [
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        f"content, persona UNINDEXED, content={quote}messages{quote}, content_rowid='id', {TOKENIZE})",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, content, persona) "
        "VALUES (new.id, new.content, new.persona); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content, persona) "
        "VALUES ('delete', old.id, old.content, old.persona); END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content, persona) "
        "VALUES ('delete', old.id, old.content, old.persona); "
        "INSERT INTO messages_fts(rowid, content, persona) "
        "VALUES (new.id, new.content, new.persona); END",
        # Every message is indexed, so FTS5's own rebuild (from the content table) refills it.
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ]


def _memory_fts(quote: str) -> list[str]:
    return [
        "CREATE VIRTUAL TABLE memory_fts USING fts5("
        "text, kind UNINDEXED, run_id UNINDEXED, "
        f"content={quote}memory_nodes{quote}, content_rowid='id', {TOKENIZE})",
        "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_nodes "
        f"WHEN new.kind NOT IN {UNINDEXED_KINDS} BEGIN "
        "INSERT INTO memory_fts(rowid, text, kind, run_id) "
        "VALUES (new.id, new.text, new.kind, new.run_id); END",
        "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_nodes "
        f"WHEN old.kind NOT IN {UNINDEXED_KINDS} BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text, kind, run_id) "
        "VALUES ('delete', old.id, old.text, old.kind, old.run_id); END",
        "CREATE TRIGGER memory_fts_update AFTER UPDATE OF text, kind ON memory_nodes BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text, kind, run_id) "
        "SELECT 'delete', old.id, old.text, old.kind, old.run_id "
        f"WHERE old.kind NOT IN {UNINDEXED_KINDS}; "
        "INSERT INTO memory_fts(rowid, text, kind, run_id) "
        "SELECT new.id, new.text, new.kind, new.run_id "
        f"WHERE new.kind NOT IN {UNINDEXED_KINDS}; END",
        # Not FTS5's 'rebuild': it would index every row, messages and personas included.
        "INSERT INTO memory_fts(rowid, text, kind, run_id) SELECT id, text, kind, run_id "
        f"FROM memory_nodes WHERE kind NOT IN {UNINDEXED_KINDS}",
    ]


def _drop() -> None:
    for table in ("messages_fts", "memory_fts"):
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{event}")
        op.execute(f"DROP TABLE IF EXISTS {table}")


def _declare(quote: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # FTS5 is SQLite's; other databases have no such index
    _drop()
    for statement in (*_messages_fts(quote), *_memory_fts(quote)):
        op.execute(statement)


def upgrade() -> None:
    _declare('"')


def downgrade() -> None:
    _declare("'")
