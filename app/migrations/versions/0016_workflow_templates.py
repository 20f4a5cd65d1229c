"""Workflow templates, and webhooks of workflows.

- workflow_templates: one row an (owner, name), the steps as a workflow's submit gives them, the
  JSON Schema of the input (null: any object) and on_failure.
- workflows.webhook: where the workflow's ending is delivered (workflow.completed, .failed, ...).
- webhook_deliveries.workflow_id: a delivery is of a task's ending or of a workflow's (task_id
  is null then).
- ux_tasks_workflow_step only over workflows' steps (WHERE workflow_id IS NOT NULL): a plain
  task's insert no longer writes an entry of NULLs into it (bench/against.py measured that at
  5 to 6 % of submit throughput).
- tasks.cancel_reason: why a running task was asked to stop, when not at its client's request
  (a workflow's step: "upstream step X failed").

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSONValue = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
UTC = sa.DateTime(timezone=True)
STEPS_ONLY = sa.text("workflow_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "workflow_templates",
        sa.Column("owner", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("input_schema", JSONValue, nullable=True),
        sa.Column("steps", JSONValue, nullable=False),
        sa.Column("on_failure", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", UTC, nullable=False, server_default=sa.func.now()),
    )
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("webhook", JSONValue, nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("cancel_reason", sa.String(200), nullable=True))
    op.drop_index("ux_tasks_workflow_step", table_name="tasks")
    op.create_index(
        "ux_tasks_workflow_step", "tasks", ["workflow_id", "step"], unique=True,
        postgresql_where=STEPS_ONLY, sqlite_where=STEPS_ONLY,
    )  # fmt: skip
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("task_id", existing_type=sa.Uuid(), nullable=True)
        batch.add_column(sa.Column("workflow_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_webhook_deliveries_workflow_id", "workflows", ["workflow_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint("fk_webhook_deliveries_workflow_id", type_="foreignkey")
        batch.drop_column("workflow_id")
        batch.alter_column("task_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_index("ux_tasks_workflow_step", table_name="tasks")
    op.create_index("ux_tasks_workflow_step", "tasks", ["workflow_id", "step"], unique=True)
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cancel_reason")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("webhook")
    op.drop_table("workflow_templates")
