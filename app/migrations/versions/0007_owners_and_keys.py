"""API keys, and an owner on every task and schedule.

Rows written before keys existed belong to the owner "default", the owner of open mode.
Idempotency keys and schedule names become unique per owner, and the list queries get an
index that starts with the owner.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(20), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("rate_limit", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ux_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)

    op.execute("UPDATE tasks SET owner = 'default' WHERE owner IS NULL")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("owner", existing_type=sa.String(100), nullable=False, server_default="default")
    op.drop_index("ux_tasks_idempotency_key", "tasks")
    op.create_index("ux_tasks_owner_idempotency_key", "tasks", ["owner", "idempotency_key"], unique=True)
    op.create_index("ix_tasks_owner_created_at_id", "tasks", ["owner", "created_at", "id"])
    op.create_index("ix_tasks_owner_status_created_at_id", "tasks", ["owner", "status", "created_at", "id"])

    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("owner", sa.String(100), nullable=False, server_default="default"))
    op.drop_index("ux_schedules_name", "schedules")
    op.create_index("ux_schedules_owner_name", "schedules", ["owner", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_schedules_owner_name", "schedules")
    op.create_index("ux_schedules_name", "schedules", ["name"], unique=True)
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_tasks_owner_status_created_at_id", "tasks")
    op.drop_index("ix_tasks_owner_created_at_id", "tasks")
    op.drop_index("ux_tasks_owner_idempotency_key", "tasks")
    op.create_index("ux_tasks_idempotency_key", "tasks", ["idempotency_key"], unique=True)
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("owner", existing_type=sa.String(100), nullable=True, server_default=None)
    op.drop_index("ux_api_keys_key_hash", "api_keys")
    op.drop_table("api_keys")
