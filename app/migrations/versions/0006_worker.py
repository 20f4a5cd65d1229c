"""Which worker runs a STARTED task, so the recovery sweep can tell when it died.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("worker", sa.String(200)))
    op.create_index("ix_tasks_status_started_at", "tasks", ["status", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_started_at", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("worker")
