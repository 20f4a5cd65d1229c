"""Paused queues (app/core/pauses.py).

- paused_queues: a row per paused queue; the claim starts no task of one.
- tasks.paused_queue: the paused queue that holds a WAITING task; ix_tasks_paused_queue over those
  tasks, in the order a resume releases them.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

HELD = sa.text("paused_queue IS NOT NULL AND status = 'WAITING'")


def upgrade() -> None:
    op.create_table(
        "paused_queues",
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("paused_by", sa.String(100), nullable=False),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("paused_queue", sa.String(100), nullable=True))
    op.create_index(
        "ix_tasks_paused_queue", "tasks", ["paused_queue", "priority", "created_at"],
        postgresql_where=HELD, sqlite_where=HELD,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_tasks_paused_queue", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("paused_queue")
    op.drop_table("paused_queues")
