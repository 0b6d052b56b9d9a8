"""broadcasts with their recipients, drip campaigns with who is in them, message indexes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("media_url", sa.String(), nullable=True),
        sa.Column("status_callback", sa.String(), nullable=True),
        sa.Column("sender_number", sa.String(16), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        # How the audience was chosen: via_tags, via_contact_ids, via_phone_numbers, via_field.
        sa.Column("audience", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("scheduled_for", UTCDateTime(timezone=True), nullable=True),
        sa.Column("published_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_broadcasts_workspace_created", "broadcasts", ["workspace_id", "created_at"])
    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", sa.String(40), sa.ForeignKey("broadcasts.id")),
        sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id")),
        sa.Column("message_id", sa.String(40), nullable=True),
        sa.Column("conversation_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("attempted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("broadcast_id", "contact_id"),
    )
    op.create_index("ix_broadcast_recipients_message", "broadcast_recipients", ["message_id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        # The keyword that starts it (from a customer's text, or the API).
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        # The texts in order: {"message", "delay_seconds", "media_url"}; the first goes at once.
        sa.Column("steps", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("workspace_id", "key", name="uq_campaigns_workspace_key"),
    )
    op.create_table(
        "campaign_enrollments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("conversation_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        # The messages queued for its steps, in order (scheduled ones can be canceled).
        sa.Column("message_ids", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_campaign_enrollments_contact", "campaign_enrollments", ["contact_id", "campaign_id"]
    )
    # The inbox searches a workspace's messages by time, and its scheduled ones by when due.
    op.create_index("ix_messages_workspace_created", "messages", ["workspace_id", "created_at"])
    op.create_index(
        "ix_messages_workspace_send_at",
        "messages",
        ["workspace_id", "send_at"],
        sqlite_where=sa.text("send_at IS NOT NULL"),
        postgresql_where=sa.text("send_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_workspace_send_at", table_name="messages")
    op.drop_index("ix_messages_workspace_created", table_name="messages")
    op.drop_index("ix_campaign_enrollments_contact", table_name="campaign_enrollments")
    op.drop_table("campaign_enrollments")
    op.drop_table("campaigns")
    op.drop_index("ix_broadcast_recipients_message", table_name="broadcast_recipients")
    op.drop_table("broadcast_recipients")
    op.drop_index("ix_broadcasts_workspace_created", table_name="broadcasts")
    op.drop_table("broadcasts")
