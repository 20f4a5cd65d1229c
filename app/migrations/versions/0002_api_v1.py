"""Columns and indexes for the v1 API: retries, cancellation, idempotency, cursor pagination.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("retry_of", sa.Uuid))
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("request_hash", sa.String(64)))
    op.create_index("ux_tasks_idempotency_key", "tasks", ["idempotency_key"], unique=True)
    # The list is newest first with the id as tie-break; each filter gets its own index.
    op.drop_index("ix_tasks_created_at", "tasks")
    op.drop_index("ix_tasks_status_created_at", "tasks")
    op.drop_index("ix_tasks_name_created_at", "tasks")
    op.create_index("ix_tasks_created_at_id", "tasks", ["created_at", "id"])
    op.create_index("ix_tasks_status_created_at_id", "tasks", ["status", "created_at", "id"])
    op.create_index("ix_tasks_name_created_at_id", "tasks", ["name", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_name_created_at_id", "tasks")
    op.drop_index("ix_tasks_status_created_at_id", "tasks")
    op.drop_index("ix_tasks_created_at_id", "tasks")
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"])
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index("ix_tasks_name_created_at", "tasks", ["name", "created_at"])
    op.drop_index("ux_tasks_idempotency_key", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("request_hash")
        batch.drop_column("cancel_requested_at")
        batch.drop_column("retry_of")
