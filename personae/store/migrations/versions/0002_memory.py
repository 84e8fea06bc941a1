"""The memory graph: memory_nodes and memory_edges, full-text search over memory (memory_fts).

Existing runs get their message and persona nodes (with authored_by and replies_to edges), so the
graph of any run, old or new, loads the same way.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Kinds that are not indexed in memory_fts: message text is already in messages_fts, and a
# persona node is only a name.
UNINDEXED_KINDS = "('message', 'persona')"


def upgrade() -> None:
    op.create_table(
        "memory_nodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("level", sa.Integer),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data", sa.JSON),
        sa.Column("turn", sa.Integer),
        sa.Column("valid_from", sa.Integer),
        sa.Column("valid_to", sa.Integer),
        sa.Column(
            "message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE")
        ),
    )
    op.create_index("ix_memory_nodes_run_kind", "memory_nodes", ["run_id", "kind"])
    op.create_index("ix_memory_nodes_message_id", "memory_nodes", ["message_id"])
    op.create_table(
        "memory_edges",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "src", sa.Integer, sa.ForeignKey("memory_nodes.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "dst", sa.Integer, sa.ForeignKey("memory_nodes.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("turn", sa.Integer),
    )
    op.create_index("ix_memory_edges_run", "memory_edges", ["run_id"])
    op.create_index("ix_memory_edges_src", "memory_edges", ["src"])
    op.create_index("ix_memory_edges_dst", "memory_edges", ["dst"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in (
            "CREATE VIRTUAL TABLE memory_fts USING fts5("
            "text, kind UNINDEXED, run_id UNINDEXED, content='memory_nodes', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2')",
            "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_nodes "
            f"WHEN new.kind NOT IN {UNINDEXED_KINDS} BEGIN "
            "INSERT INTO memory_fts(rowid, text, kind, run_id) "
            "VALUES (new.id, new.text, new.kind, new.run_id); END",
            "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_nodes "
            f"WHEN old.kind NOT IN {UNINDEXED_KINDS} BEGIN "
            "INSERT INTO memory_fts(memory_fts, rowid, text, kind, run_id) "
            "VALUES ('delete', old.id, old.text, old.kind, old.run_id); END",
            # One trigger for both halves, so the old row leaves the index before the new enters.
            "CREATE TRIGGER memory_fts_update AFTER UPDATE OF text, kind ON memory_nodes BEGIN "
            "INSERT INTO memory_fts(memory_fts, rowid, text, kind, run_id) "
            "SELECT 'delete', old.id, old.text, old.kind, old.run_id "
            f"WHERE old.kind NOT IN {UNINDEXED_KINDS}; "
            "INSERT INTO memory_fts(rowid, text, kind, run_id) "
            "SELECT new.id, new.text, new.kind, new.run_id "
            f"WHERE new.kind NOT IN {UNINDEXED_KINDS}; END",
        ):
            op.execute(statement)
    _backfill()


def _backfill() -> None:
    """Message and persona nodes, and their edges, for runs made before this revision."""
    for statement in (
        # Personas of each run, and any other author (User) found in its transcript.
        "INSERT INTO memory_nodes (run_id, kind, text, turn) "
        "SELECT run_id, 'persona', name, 0 FROM run_personas",
        "INSERT INTO memory_nodes (run_id, kind, text, turn) "
        "SELECT DISTINCT m.run_id, 'persona', m.persona, 0 FROM messages m WHERE NOT EXISTS ("
        "SELECT 1 FROM run_personas p WHERE p.run_id = m.run_id AND p.name = m.persona)",
        "INSERT INTO memory_nodes (run_id, kind, text, turn, message_id) "
        "SELECT run_id, 'message', substr(content, 1, 200), turn, id FROM messages",
        "INSERT INTO memory_edges (run_id, src, dst, kind, turn) "
        "SELECT n.run_id, n.id, p.id, 'authored_by', n.turn FROM memory_nodes n "
        "JOIN messages m ON m.id = n.message_id "
        "JOIN memory_nodes p ON p.run_id = n.run_id AND p.kind = 'persona' AND p.text = m.persona "
        "WHERE n.kind = 'message'",
        "INSERT INTO memory_edges (run_id, src, dst, kind, turn) "
        "SELECT n.run_id, n.id, prev.id, 'replies_to', n.turn FROM memory_nodes n "
        "JOIN memory_nodes prev ON prev.run_id = n.run_id AND prev.kind = 'message' "
        "AND prev.turn = n.turn - 1 WHERE n.kind = 'message'",
    ):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("memory_fts_insert", "memory_fts_delete", "memory_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memory_fts")
    op.drop_table("memory_edges")
    op.drop_table("memory_nodes")
