"""Team members and their places in workspaces."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Membership, User


async def find_member(
    *, session: AsyncSession, workspace_id: str, id_or_email: str
) -> tuple[User, Membership] | None:
    """A member of the workspace by user id or email (any case), with their membership."""
    key = id_or_email.strip()
    if not key:
        return None
    condition = (
        col(User.email).ilike(
            key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"), escape="\\"
        )
        if "@" in key
        else col(User.id) == key
    )
    found = await session.exec(
        select(User, Membership)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(Membership.workspace_id == workspace_id, condition)
    )
    row = found.first()
    return None if row is None else (row[0], row[1])


async def members(*, session: AsyncSession, workspace_id: str) -> list[tuple[User, Membership]]:
    """The workspace's team, in the order they joined."""
    found = await session.exec(
        select(User, Membership)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(Membership.workspace_id == workspace_id)
        .order_by(col(Membership.added_at), col(User.id))
    )
    return [(user, membership) for user, membership in found]
