"""Workflows under an Idempotency-Key: the same key and body within 24 hours is the same workflow.

- workflows.idempotency_key, workflows.request_hash: the key a submit gave, and a hash of its body;
  the unique (owner, idempotency_key) index decides between concurrent duplicates.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
    op.create_index(
        "ux_workflows_owner_idempotency_key", "workflows", ["owner", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_workflows_owner_idempotency_key", table_name="workflows")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
