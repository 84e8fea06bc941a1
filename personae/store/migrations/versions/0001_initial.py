"""The first schema: runs, run_personas, messages (with full-text search), llm_calls.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scenario_name", sa.String, nullable=False),
        sa.Column("scenario_path", sa.Text),
        sa.Column("scenario_yaml", sa.Text, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("stop_reason", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("layout", sa.String, nullable=False),
        sa.Column("num_ctx", sa.Integer, nullable=False),
        sa.Column("max_turns", sa.Integer, nullable=False),
        sa.Column("seed", sa.Integer),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("pid", sa.Integer),
        sa.Column("turns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("evaluated_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("personae_version", sa.String, nullable=False),
        sa.Column("parent_run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("fork_turn", sa.Integer),
    )
    op.create_table(
        "run_personas",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("position", sa.Integer),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "name"),
    )
    op.create_index("ix_run_personas_run_id", "run_personas", ["run_id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("turn", sa.Integer, nullable=False),
        sa.Column("persona", sa.String, nullable=False),
        sa.Column("phase", sa.String),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("thinking", sa.Text),
        sa.Column("raw", sa.Text),
        sa.Column("cut", sa.Text),
        sa.Column("structured", sa.JSON),
        sa.Column("meta", sa.JSON),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "turn"),
    )
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
        sa.Column("turn", sa.Integer),
        sa.Column("purpose", sa.String, nullable=False),
        sa.Column("persona", sa.String),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("prompt", sa.JSON, nullable=False),
        sa.Column("prompt_hash", sa.String, nullable=False),
        sa.Column("json_schema", sa.JSON),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("response", sa.Text),
        sa.Column("done_reason", sa.String),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("evaluated_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_ns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("load_ns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_eval_ns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("eval_ns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("wall_ns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_llm_calls_run", "llm_calls", ["run_id", "id"])
    if op.get_bind().dialect.name == "sqlite":
        # Full-text search over the transcript, kept in step by triggers (external content).
        for statement in (
            "CREATE VIRTUAL TABLE messages_fts USING fts5("
            "content, persona UNINDEXED, content='messages', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2')",
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
        ):
            op.execute(statement)
