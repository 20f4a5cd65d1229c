"""Workflows: steps that are tasks, released as their parents end.

- workflows: one row a workflow, its definition (the steps, normalised) and input, its status.
- tasks.workflow_id and tasks.step: the workflow a task is a step of, and the step's key.
- tasks.waiting_parents: for a WAITING step, how many parents have not ended yet; the parent's
  terminal write lowers it in the same transaction, and the write that reaches 0 releases it.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSONValue = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False, server_default="default"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", JSONValue, nullable=False),
        sa.Column("steps", JSONValue, nullable=False),
        sa.Column("on_failure", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", UTC, nullable=False, server_default=sa.func.now()),
        sa.Column("completed_at", UTC, nullable=True),
    )
    op.create_index("ix_workflows_created_at_id", "workflows", ["created_at", "id"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("workflow_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("step", sa.String(200), nullable=True))
        batch.add_column(sa.Column("waiting_parents", sa.Integer(), nullable=True))
    op.create_index("ux_tasks_workflow_step", "tasks", ["workflow_id", "step"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_tasks_workflow_step", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("waiting_parents")
        batch.drop_column("step")
        batch.drop_column("workflow_id")
    op.drop_index("ix_workflows_created_at_id", table_name="workflows")
    op.drop_table("workflows")
