"""media kept from texts, webhooks quarantined for their signature, the generic gateway's settings

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("gateway_url", sa.String(), nullable=True))
        batch.add_column(sa.Column("gateway_secret", sa.String(), nullable=True))
    op.create_table(
        "media",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column(
            "conversation_id", sa.String(40), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("message_id", sa.String(40), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("storage", sa.String(10), nullable=True),
        sa.Column("key", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "position", name="uq_media_message_position"),
    )
    op.create_index("ix_media_conversation_id", "media", ["conversation_id"])
    op.create_table(
        "quarantined_webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("remote", sa.String(64), nullable=True),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("replay_status", sa.Integer(), nullable=True),
        sa.Column("replayed_by", sa.String(100), nullable=True),
    )
    op.create_index(
        "ix_quarantined_webhooks_received", "quarantined_webhooks", ["received_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_quarantined_webhooks_received", table_name="quarantined_webhooks")
    op.drop_table("quarantined_webhooks")
    op.drop_index("ix_media_conversation_id", table_name="media")
    op.drop_table("media")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("gateway_secret")
        batch.drop_column("gateway_url")
