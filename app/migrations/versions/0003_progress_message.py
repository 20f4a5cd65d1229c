"""A short message beside a task's progress.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("progress_message", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("progress_message")
