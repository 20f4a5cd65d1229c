"""Concurrency keys (app/core/concurrency.py).

- tasks.concurrency_key, concurrency_limit: the key a task runs under, and its limit.
- tasks.concurrency_slot: the slot it holds while PENDING, STARTED or RETRYING; the partial unique
  index ux_tasks_concurrency_slot makes two holders of one slot impossible, and a row leaving
  those statuses frees its slot in the same write. ck_tasks_concurrency_slot keeps the slot under
  the limit.
- ix_tasks_concurrency_waiting: the tasks waiting for a slot of a key, oldest first.
- ix_tasks_retry_of (retries only): whether a task was retried already, which a bulk retry skips.
- bulk_actions: a bulk retry's or cancel's Idempotency-Key, claimed before it acts, with its answer.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

JSONValue = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
SLOT_HELD = sa.text("concurrency_slot IS NOT NULL AND status IN ('PENDING', 'STARTED', 'RETRYING')")
SLOT_AWAITED = sa.text("concurrency_key IS NOT NULL AND status = 'WAITING' AND concurrency_slot IS NULL")


def upgrade() -> None:
    op.create_table(
        "bulk_actions",
        sa.Column("owner", sa.String(100), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("answer", JSONValue, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.String(300), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("concurrency_slot", sa.SmallInteger(), nullable=True))
        batch.create_check_constraint("ck_tasks_concurrency_slot", "concurrency_slot < concurrency_limit")
    op.create_index(
        "ux_tasks_concurrency_slot", "tasks", ["concurrency_key", "concurrency_slot"], unique=True,
        postgresql_where=SLOT_HELD, sqlite_where=SLOT_HELD,
    )  # fmt: skip
    op.create_index(
        "ix_tasks_concurrency_waiting", "tasks", ["concurrency_key", "created_at"],
        postgresql_where=SLOT_AWAITED, sqlite_where=SLOT_AWAITED,
    )  # fmt: skip
    retries = sa.text("retry_of IS NOT NULL")
    op.create_index(
        "ix_tasks_retry_of", "tasks", ["retry_of"], postgresql_where=retries, sqlite_where=retries
    )


def downgrade() -> None:
    op.drop_table("bulk_actions")
    op.drop_index("ix_tasks_retry_of", table_name="tasks")
    op.drop_index("ix_tasks_concurrency_waiting", table_name="tasks")
    op.drop_index("ux_tasks_concurrency_slot", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("ck_tasks_concurrency_slot", type_="check")
        batch.drop_column("concurrency_slot")
        batch.drop_column("concurrency_limit")
        batch.drop_column("concurrency_key")
