"""Workspaces (tenants): who the business is and how it authenticates."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import SenderNumber, Workspace
from storage.raw import Plan, marks
from storage.types import utcnow

# The workspace a single-business install runs as (configured by SMSAGENT_* settings).
DEFAULT_WORKSPACE_ID = "ws_default"


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
    gateway: tuple[str, str] | None = None,
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
    if gateway is not None:
        workspace.gateway_url, workspace.gateway_secret = gateway
    if appointment_types is not None:
        workspace.appointment_types = dict(appointment_types)
    await session.flush()
    return workspace


async def get_workspace(*, session: AsyncSession, workspace_id: str) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def find_workspace_by_key_hash(*, session: AsyncSession, key_hash: str) -> Workspace | None:
    result = await session.exec(select(Workspace).where(Workspace.api_key_hash == key_hash))
    return result.first()


async def find_workspace_by_channel_hash(
    *, session: AsyncSession, channel_hash: str
) -> Workspace | None:
    result = await session.exec(
        select(Workspace).where(Workspace.avaamo_channel_hash == channel_hash)
    )
    return result.first()


async def list_workspaces(*, session: AsyncSession) -> list[Workspace]:
    result = await session.exec(
        select(Workspace).order_by(col(Workspace.created_at), col(Workspace.id))
    )
    return list(result.all())


async def sender_numbers(*, session: AsyncSession, workspace_id: str) -> list[SenderNumber]:
    """The workspace's numbers, oldest first (the first is its default sender)."""
    result = await session.exec(
        select(SenderNumber)
        .where(SenderNumber.workspace_id == workspace_id)
        .order_by(col(SenderNumber.created_at), col(SenderNumber.number))
    )
    return list(result.all())


async def claim_sender_number(
    *, session: AsyncSession, workspace_id: str, number: str, provider: str
) -> SenderNumber:
    """Give the workspace `number`; a number already another workspace's is refused."""
    existing = await session.get(SenderNumber, number)
    if existing is not None and existing.workspace_id != workspace_id:
        raise NumberTaken(number)
    if existing is None:
        existing = SenderNumber(number=number, workspace_id=workspace_id, provider=provider)
        session.add(existing)
    else:
        existing.provider = provider
    await session.flush()
    return existing


async def workspace_for_number(*, session: AsyncSession, number: str) -> str | None:
    row = await session.get(SenderNumber, number)
    return None if row is None else row.workspace_id


class NumberTaken(Exception):
    def __init__(self, number: str) -> None:
        super().__init__("the number already belongs to another workspace")
        self.number = number


def hooked_plan(workspace_ids: Collection[str]) -> Plan[set[str]]:
    """Which of these workspaces have a webhook URL: one look-up by primary key."""
    ids = sorted(workspace_ids)
    # Only placeholders are formatted into the statement, never values.
    found = yield (
        f"SELECT id FROM workspaces WHERE id IN ({marks(len(ids))}) "  # noqa: S608
        "AND webhook_url IS NOT NULL",
        ids,
    )
    return {workspace_id for (workspace_id,) in found}
