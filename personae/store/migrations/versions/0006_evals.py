"""`personae eval`: evals, their methods and items, and one result per method × item.

An eval compares answering methods on checkable tasks; the answering itself is ordinary runs, so
these tables only say which runs answered what, the answer read out, whether it was right and what
it cost. Deleting an eval deletes its rows here, never its runs.

Revision ID: 0006
Revises: 0004 (re-chained by the coordinator at merge: it follows whatever precedes it on main)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tasks", sa.Text, nullable=False),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("budget", sa.String),
        sa.Column("budget_tokens", sa.Integer),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("personae_version", sa.String, nullable=False),
    )
    op.create_table(
        "eval_methods",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("eval_id", sa.Integer, sa.ForeignKey("evals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("scenario", sa.Text),
        sa.Column("samples", sa.Integer, nullable=False),
    )
    op.create_index("ix_eval_methods_eval_id", "eval_methods", ["eval_id"])
    op.create_table(
        "eval_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("eval_id", sa.Integer, sa.ForeignKey("evals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("check", sa.String, nullable=False),
        sa.Column("choices", sa.JSON),
        sa.UniqueConstraint("eval_id", "task_id"),
    )
    op.create_index("ix_eval_items_eval_id", "eval_items", ["eval_id"])
    op.create_table(
        "eval_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("eval_id", sa.Integer, sa.ForeignKey("evals.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "method_id", sa.Integer, sa.ForeignKey("eval_methods.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "item_id", sa.Integer, sa.ForeignKey("eval_items.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("correct", sa.Integer, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("votes", sa.JSON),
        sa.Column("first_answer", sa.Text),
        sa.Column("first_correct", sa.Integer),
        sa.Column("evaluated_prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("wall_ns", sa.Integer, nullable=False),
        sa.Column("run_ids", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("method_id", "item_id"),
    )
    op.create_index("ix_eval_results_eval_id", "eval_results", ["eval_id"])


def downgrade() -> None:
    for table in ("eval_results", "eval_items", "eval_methods", "evals"):
        op.drop_table(table)
