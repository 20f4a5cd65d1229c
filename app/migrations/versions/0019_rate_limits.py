"""Named rate limits (app/core/rate_limits.py).

- rate_limits: a limit's rate (`count` per `interval_seconds`), its burst, and its theoretical
  arrival time (`tat`, seconds since the epoch by the database's clock; GCRA).
- tasks.rate_limit, rate_until: while a task waits for its turn, the limit and the time its token
  is reserved for; ix_tasks_rate_until over those tasks, for beat's due loop.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

PACED = sa.text("rate_limit IS NOT NULL AND status = 'WAITING'")


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("rate", sa.String(50), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("rate_limit", sa.String(100), nullable=True))
        batch.add_column(sa.Column("rate_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_tasks_rate_until", "tasks", ["rate_until"], postgresql_where=PACED, sqlite_where=PACED
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_rate_until", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("rate_until")
        batch.drop_column("rate_limit")
    op.drop_table("rate_limits")
