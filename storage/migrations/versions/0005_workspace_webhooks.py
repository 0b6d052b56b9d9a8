"""workspaces have a webhook URL and signing secret, and their kinds of visit with lengths

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_url", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret", sa.String(), nullable=True))
        batch_op.add_column(
            sa.Column("appointment_types", sa.JSON(), nullable=False, server_default="{}")
        )


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("appointment_types")
        batch_op.drop_column("webhook_secret")
        batch_op.drop_column("webhook_url")
