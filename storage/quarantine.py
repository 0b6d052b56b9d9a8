"""Webhooks refused for their signature, kept whole until an operator replays them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import QuarantinedWebhook
from storage.types import new_id, utcnow


async def keep(
    *,
    session: AsyncSession,
    provider: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    reason: str,
    remote: str | None,
    received_at: datetime,
    limit: int,
) -> str:
    """Keep a refused webhook; past `limit` rows, the oldest go (a flood of forgeries cannot
    fill the disk)."""
    row = QuarantinedWebhook(
        id=new_id("qwh"),
        provider=provider,
        method=method,
        path=path,
        headers=dict(headers),
        body=body,
        reason=reason,
        remote=remote,
        received_at=received_at,
    )
    session.add(row)
    await session.flush()
    total = (await session.exec(select(func.count()).select_from(QuarantinedWebhook))).one()
    if total > limit:
        oldest = (
            select(QuarantinedWebhook.id)
            .order_by(col(QuarantinedWebhook.received_at), col(QuarantinedWebhook.id))
            .limit(total - limit)
        )
        await session.exec(
            delete(QuarantinedWebhook).where(
                col(QuarantinedWebhook.id).in_(oldest.scalar_subquery())
            )
        )
    return row.id


async def listed(
    *,
    session: AsyncSession,
    provider: str | None = None,
    since: datetime | None = None,
    pending_only: bool = False,
    limit: int = 50,
) -> list[QuarantinedWebhook]:
    """Newest first."""
    query = select(QuarantinedWebhook)
    if provider is not None:
        query = query.where(QuarantinedWebhook.provider == provider)
    if since is not None:
        query = query.where(col(QuarantinedWebhook.received_at) >= since)
    if pending_only:
        query = query.where(col(QuarantinedWebhook.replayed_at).is_(None))
    query = query.order_by(
        col(QuarantinedWebhook.received_at).desc(), col(QuarantinedWebhook.id).desc()
    ).limit(limit)
    return list((await session.exec(query)).all())


async def find(*, session: AsyncSession, id_or_prefix: str) -> QuarantinedWebhook | None:
    """By its id or a unique start of it; LookupError when the start is not unique."""
    exact = await session.get(QuarantinedWebhook, id_or_prefix)
    if exact is not None:
        return exact
    escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    found = (
        await session.exec(
            select(QuarantinedWebhook)
            .where(col(QuarantinedWebhook.id).like(f"{escaped}%", escape="\\"))
            .limit(2)
        )
    ).all()
    if len(found) > 1:
        raise LookupError(f"{id_or_prefix!r} starts more than one quarantined webhook")
    return found[0] if found else None


async def mark_replayed(*, session: AsyncSession, webhook_id: str, status: int, by: str) -> None:
    row = await session.get(QuarantinedWebhook, webhook_id)
    if row is not None:
        row.replayed_at, row.replay_status, row.replayed_by = utcnow(), status, by[:100]
        await session.flush()
