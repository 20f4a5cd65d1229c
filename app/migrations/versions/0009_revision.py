"""A revision number on every task, raised by each write: the id of its change events.

A stream client that reconnects sends the last revision it saw (Last-Event-ID) and is sent the
task again only if it changed since. Timestamps could not do this: two writes may share one.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("revision")
