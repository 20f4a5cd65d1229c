"""Recurring schedules, and which schedule and fire time made a task.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("parameters", json_type, nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_task_id", sa.Uuid),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ux_schedules_name", "schedules", ["name"], unique=True)
    op.create_index("ix_schedules_enabled_next_run_at", "schedules", ["enabled", "next_run_at"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("schedule_id", sa.Uuid))
        batch.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True)))
    # One task per schedule and fire time, however many beat processes run.
    op.create_index("ux_tasks_schedule_fire", "tasks", ["schedule_id", "scheduled_for"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_tasks_schedule_fire", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule_id")
    op.drop_index("ix_schedules_enabled_next_run_at", "schedules")
    op.drop_index("ux_schedules_name", "schedules")
    op.drop_table("schedules")
