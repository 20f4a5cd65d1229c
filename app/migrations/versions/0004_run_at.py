"""When a SCHEDULED task is due.

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
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("run_at", sa.DateTime(timezone=True)))
    op.create_index("ix_tasks_status_run_at", "tasks", ["status", "run_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_run_at", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("run_at")
