"""appointment book: opening hours, closed days and scheduling per workspace; moves kept

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        # Weekday -> "08:00-12:00, 13:00-17:00"; NULL: the default hours.
        batch_op.add_column(sa.Column("hours", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("closed_days", sa.JSON(), nullable=False, server_default="[]")
        )
        # builtin: the agent books into our appointment book; external: it asks the business.
        batch_op.add_column(
            sa.Column("scheduling", sa.String(), nullable=False, server_default="builtin")
        )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        # Earlier times of a moved appointment, oldest first.
        batch_op.add_column(sa.Column("history", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_index("ix_appointments_workspace_starts", ["workspace_id", "starts_at"])


def downgrade() -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index("ix_appointments_workspace_starts")
        batch_op.drop_column("history")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("scheduling")
        batch_op.drop_column("closed_days")
        batch_op.drop_column("hours")
