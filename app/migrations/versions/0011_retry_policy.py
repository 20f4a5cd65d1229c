"""A task's own retry policy, given at submit: {"max_retries": n, "on": "any" | "transient"}.

Null: its task type's policy (GET /api/v1/task-types says which).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSONValue = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("retry_policy", JSONValue))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("retry_policy")
