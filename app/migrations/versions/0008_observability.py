"""Worker heartbeats, housekeeping runs, and indexes for the statistics and the oldest PENDING task.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("hostname", sa.String(200), primary_key=True),
        sa.Column("queues", sa.String(500), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "housekeeping",
        sa.Column("job", sa.String(100), primary_key=True),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False),
        sa.Column("totals", sa.Text, nullable=False),
    )
    # Finished rows only (a submit adds nothing to it): the statistics read a window of them.
    finished = sa.text("completed_at IS NOT NULL")
    op.create_index(
        "ix_tasks_completed_at", "tasks", ["completed_at"], postgresql_where=finished, sqlite_where=finished
    )
    # The oldest PENDING task per queue, for /metrics and /api/v1/queues, from PENDING rows only.
    pending = sa.text("status = 'PENDING'")
    op.create_index(
        "ix_tasks_pending_queue_created_at",
        "tasks",
        ["queue", "created_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_pending_queue_created_at", "tasks")
    op.drop_index("ix_tasks_completed_at", "tasks")
    op.drop_table("housekeeping")
    op.drop_table("workers")
