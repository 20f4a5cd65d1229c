"""Task types of one's own: what each worker serves, a task's own time limit, and tags.

- workers.task_types: the task types a worker has loaded, each with its parameters' hash (JSON).
- tasks.timeout_seconds: the hard time limit given at submit (null: its task type's).
- tasks.tags and schedules.tags: up to 10 "key:value" strings (null: none), with a GIN index
  on PostgreSQL (untagged rows stay out of it) for `?tag=` filters.
- tasks.sealed and schedules.sealed: the secrets its parameters do not show (http_request's
  credential headers), sealed (app/core/sealing.py); null: none.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSONValue = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("task_types", sa.Text(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("timeout_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tags", JSONValue, nullable=True))
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("tags", JSONValue, nullable=True))
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_tasks_tags",
            "tasks",
            ["tags"],
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
            postgresql_where=sa.text("tags IS NOT NULL"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_tasks_tags", table_name="tasks")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("sealed")
        batch.drop_column("tags")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("sealed")
        batch.drop_column("tags")
        batch.drop_column("timeout_seconds")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("task_types")
