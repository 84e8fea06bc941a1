"""Scenario variables and option overrides of a run: runs.variables, runs.options.

A run of a scenario with `vars:` used values that are not in its stored YAML (which is kept as
written, placeholders and all), and a run started with `-o KEY VALUE` used options that no file
holds. Both are stored on the run row so that `resume` and `replay` rebuild the same prompts
without the flags, and `show` can say what the run was asked. Null for runs that had none, which
is every run made before this revision.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN: the table is not rebuilt, so its triggers (0003) stay.
    op.add_column("runs", sa.Column("variables", sa.JSON, nullable=True))
    op.add_column("runs", sa.Column("options", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "options")
    op.drop_column("runs", "variables")
