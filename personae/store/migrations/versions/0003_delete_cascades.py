"""Deleting a run deletes what belongs to it, in any connection, including the sqlite3 shell.

The foreign keys of 0001 and 0002 declare ON DELETE CASCADE, and Personae turns enforcement on in
every connection it opens; but SQLite enforces foreign keys only where each connection asks for it
(``PRAGMA foreign_keys``, off by default and not stored in the file), so ``delete from runs where
id = 2`` typed into ``sqlite3`` or a Datasette write left the run's messages, calls and memory
behind. A trigger on ``runs`` does the cascade itself: with enforcement on, the foreign keys have
already removed the rows and it finds nothing; with it off, it removes them, children first, and
unlinks the run's forks as ``ON DELETE SET NULL`` would. Deleting the children fires their FTS
triggers, so the search indexes stay in step either way.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TRIGGER = "runs_delete_cascade"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # other databases always enforce the declared foreign keys
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON runs BEGIN "
        "DELETE FROM memory_edges WHERE run_id = old.id; "
        "DELETE FROM memory_nodes WHERE run_id = old.id; "
        "DELETE FROM llm_calls WHERE run_id = old.id; "
        "DELETE FROM messages WHERE run_id = old.id; "
        "DELETE FROM run_personas WHERE run_id = old.id; "
        "UPDATE runs SET parent_run_id = NULL WHERE parent_run_id = old.id; "
        "END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
