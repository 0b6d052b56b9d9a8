"""the inbox: team members and their credentials, tags, contact profiles, ticket owners

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime, new_id, utcnow

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("phone", sa.String(16), nullable=True),
        sa.Column("auth_id", sa.String(40), nullable=True),
        sa.Column("auth_secret_hash", sa.String(64), nullable=True),
        # The workspace its credentials act in when a request names no subdomain.
        sa.Column(
            "home_workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=True
        ),
        sa.Column("require_2fa", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("requests", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("signed_in_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("auth_id", name="uq_users_auth_id"),
    )
    op.create_table(
        "memberships",
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id")),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id")),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        # The round-robin roster: the next ticket goes to the one assigned longest ago.
        sa.Column("last_assigned_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("added_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "user_id"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_table(
        "tags",
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id")),
        sa.Column("name", sa.String(100)),
        sa.Column("color", sa.String(20), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subdomain", sa.String(63), nullable=True))
        batch_op.create_unique_constraint("uq_workspaces_subdomain", ["subdomain"])
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        # The inbox's fields: address, company, muted, landline, priority, stuck number, ...
        batch_op.add_column(sa.Column("profile", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("owner_user_id", sa.String(40), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_user_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("addressed_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_user_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("status_callback", sa.String(), nullable=True))
        batch_op.add_column(
            sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    # Each workspace's inbox credentials become its owner's, a team member of it.
    bind = op.get_bind()
    owned = bind.execute(
        sa.text(
            "SELECT id, name, avochato_auth_id, avochato_secret_hash FROM workspaces "
            "WHERE avochato_auth_id IS NOT NULL"
        )
    ).fetchall()
    now = utcnow()
    users = sa.table(
        "users",
        *(sa.column(name) for name in ("id", "email", "name", "auth_id", "auth_secret_hash")),
        sa.column("home_workspace_id"),
        sa.column("require_2fa", sa.Boolean()),
        sa.column("requests", sa.JSON()),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    memberships = sa.table(
        "memberships",
        sa.column("workspace_id"),
        sa.column("user_id"),
        sa.column("role"),
        sa.column("enabled", sa.Boolean()),
        sa.column("added_at", UTCDateTime()),
    )
    owners = [(workspace_id, new_id("usr"), name, a, h) for workspace_id, name, a, h in owned]
    if owners:
        op.bulk_insert(
            users,
            [
                {
                    "id": user_id,
                    "email": f"owner+{workspace_id}@smsagent.invalid",
                    "name": f"{name} owner"[:100],
                    "auth_id": auth_id,
                    "auth_secret_hash": secret_hash,
                    "home_workspace_id": workspace_id,
                    "require_2fa": False,
                    "requests": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for workspace_id, user_id, name, auth_id, secret_hash in owners
            ],
        )
        op.bulk_insert(
            memberships,
            [
                {
                    "workspace_id": workspace_id,
                    "user_id": user_id,
                    "role": "owner",
                    "enabled": True,
                    "added_at": now,
                }
                for workspace_id, user_id, *_ in owners
            ],
        )
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_constraint("uq_workspaces_avochato_auth", type_="unique")
        batch_op.drop_column("avochato_secret_hash")
        batch_op.drop_column("avochato_auth_id")


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("avochato_auth_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("avochato_secret_hash", sa.String(64), nullable=True))
        batch_op.create_unique_constraint("uq_workspaces_avochato_auth", ["avochato_auth_id"])
        batch_op.drop_constraint("uq_workspaces_subdomain", type_="unique")
        batch_op.drop_column("subdomain")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("hidden")
        batch_op.drop_column("status_callback")
        batch_op.drop_column("sender_user_id")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("addressed_at")
        batch_op.drop_column("assignee_user_id")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("owner_user_id")
        batch_op.drop_column("profile")
    op.drop_table("tags")
    op.drop_index("ix_memberships_user_id", table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("users")
