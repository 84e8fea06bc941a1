"""Sweeps: ``batches`` (one per ``personae batch SWEEP.yaml``) and ``batch_variants`` (one per
point of the sweep, linked to the run that ran it).

A separate table links runs to variants, rather than columns on ``runs``: a run knows nothing of
sweeps (the library below ``personae/batch`` never imports it), and the link is written in the
transaction that creates the run, so a killed sweep never runs a variant twice. As 0003 did for
the run's own children, a trigger unlinks a deleted run's variant where a connection (the sqlite3
shell) leaves foreign keys unenforced; the variant is then run again by ``batch resume``.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TRIGGER = "runs_delete_unlink_variant"


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("sweep_path", sa.Text),
        sa.Column("sweep_yaml", sa.Text, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("variants", sa.Integer, nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_table(
        "batch_variants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "batch_id", sa.Integer, sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.UniqueConstraint("batch_id", "key"),
    )
    op.create_index("ix_batch_variants_batch_id", "batch_variants", ["batch_id"])
    op.create_index("ix_batch_variants_run_id", "batch_variants", ["run_id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON runs BEGIN "
            "UPDATE batch_variants SET run_id = NULL WHERE run_id = old.id; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    op.drop_index("ix_batch_variants_run_id", "batch_variants")
    op.drop_index("ix_batch_variants_batch_id", "batch_variants")
    op.drop_table("batch_variants")
    op.drop_table("batches")
