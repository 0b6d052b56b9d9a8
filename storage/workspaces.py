"""Workspaces (tenants): who the business is and how it authenticates."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Workspace
from storage.types import utcnow


async def ensure_workspace(
    *,
    session: AsyncSession,
    workspace_id: str,
    name: str,
    business_name: str,
    timezone: str,
    vertical: str,
    api_key_hash: str | None,
    hours: dict[str, str] | None = None,
    closed_days: list[str] | None = None,
    scheduling: str | None = None,
    webhook: tuple[str, str] | None = None,
    appointment_types: dict[str, int] | None = None,
) -> Workspace:
    """Create the workspace or bring it in line with the configuration (the appointment book's
    settings only where given)."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        workspace = Workspace(
            id=workspace_id,
            name=name,
            business_name=business_name,
            timezone=timezone,
            vertical=vertical,
            api_key_hash=api_key_hash,
        )
        session.add(workspace)
    else:
        workspace.name = name
        workspace.business_name = business_name
        workspace.timezone = timezone
        workspace.vertical = vertical
        workspace.api_key_hash = api_key_hash
        workspace.updated_at = utcnow()
    if hours is not None:
        workspace.hours = dict(hours)
    if closed_days is not None:
        workspace.closed_days = list(closed_days)
    if scheduling is not None:
        workspace.scheduling = scheduling
    workspace.webhook_url, workspace.webhook_secret = webhook or (None, None)
    if appointment_types is not None:
        workspace.appointment_types = dict(appointment_types)
    await session.flush()
    return workspace


async def get_workspace(*, session: AsyncSession, workspace_id: str) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def find_workspace_by_key_hash(*, session: AsyncSession, key_hash: str) -> Workspace | None:
    result = await session.exec(select(Workspace).where(Workspace.api_key_hash == key_hash))
    return result.first()
