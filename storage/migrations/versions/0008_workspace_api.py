"""workspaces own sender numbers, credentials and templates; messages can wait for a time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("avaamo_channel_hash", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("avochato_auth_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("avochato_secret_hash", sa.String(64), nullable=True))
        batch_op.create_unique_constraint("uq_workspaces_avaamo_channel", ["avaamo_channel_hash"])
        batch_op.create_unique_constraint("uq_workspaces_avochato_auth", ["avochato_auth_id"])
    op.create_table(
        "sender_numbers",
        sa.Column("number", sa.String(16), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sender_numbers_workspace_id", "sender_numbers", ["workspace_id"])
    op.create_table(
        "templates",
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id")),
        sa.Column("id", sa.String(64)),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id"),
    )
    op.create_table(
        "short_links",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("conversation_id", sa.String(40), nullable=True),
        sa.Column("message_id", sa.String(40), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_type", sa.String(20), nullable=True))
        # Which API sent it, for status webhooks in that API's own shape ("avoca", …).
        batch_op.add_column(sa.Column("origin", sa.String(20), nullable=True))
        batch_op.add_column(sa.Column("send_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("marketing_consent_at", UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_conversations_workspace_updated", "conversations", ["workspace_id", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_workspace_updated", table_name="conversations")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("marketing_consent_at")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("send_at")
        batch_op.drop_column("origin")
        batch_op.drop_column("message_type")
    op.drop_table("short_links")
    op.drop_table("templates")
    op.drop_index("ix_sender_numbers_workspace_id", table_name="sender_numbers")
    op.drop_table("sender_numbers")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_constraint("uq_workspaces_avochato_auth", type_="unique")
        batch_op.drop_constraint("uq_workspaces_avaamo_channel", type_="unique")
        batch_op.drop_column("avochato_secret_hash")
        batch_op.drop_column("avochato_auth_id")
        batch_op.drop_column("avaamo_channel_hash")
