"""Messages, both directions, and their delivery status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Message, MessageDirection, MessageStatus
from storage.types import new_id, upsert_insert, utcnow

# Carriers report out of order; a status only ever moves to a later rank.
STATUS_RANK: dict[str, int] = {
    MessageStatus.RECEIVED: 0,
    MessageStatus.QUEUED: 1,
    MessageStatus.SENDING: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.UNDELIVERED: 4,
    MessageStatus.FAILED: 4,
    MessageStatus.CANCELED: 4,
}


async def insert_inbound(
    *,
    session: AsyncSession,
    workspace_id: str,
    conversation_id: str,
    body: str,
    from_number: str,
    to_number: str,
    provider: str,
    provider_message_id: str,
    media_urls: Sequence[str] = (),
) -> str | None:
    """Store an inbound text once; None when this provider id was stored before (a retry)."""
    now = utcnow()
    message_id = new_id("msg")
    result = await session.exec(
        upsert_insert(session, Message)
        .values(
            id=message_id,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            direction=MessageDirection.INBOUND,
            author="contact",
            body=body,
            media_urls=list(media_urls),
            from_number=from_number,
            to_number=to_number,
            provider=provider,
            provider_message_id=provider_message_id,
            status=MessageStatus.RECEIVED,
            segments=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_message_id"])
        .returning(col(Message.id))
    )
    stored: str | None = result.scalar_one_or_none()
    return stored


async def find_by_provider_id(
    *, session: AsyncSession, provider: str, provider_message_id: str
) -> Message | None:
    result = await session.exec(
        select(Message).where(
            Message.provider == provider, Message.provider_message_id == provider_message_id
        )
    )
    return result.first()


async def add_outbound(
    *,
    session: AsyncSession,
    workspace_id: str,
    conversation_id: str,
    author: str,
    body: str,
    from_number: str,
    to_number: str,
    provider: str,
    segments: int,
    encoding: str,
    cost_cents: float | None,
    agent_run_id: str | None = None,
    media_urls: Sequence[str] = (),
) -> Message:
    message = Message(
        id=new_id("msg"),
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        direction=MessageDirection.OUTBOUND,
        author=author,
        body=body,
        media_urls=list(media_urls),
        from_number=from_number,
        to_number=to_number,
        provider=provider,
        status=MessageStatus.QUEUED,
        segments=segments,
        encoding=encoding,
        cost_cents=cost_cents,
        agent_run_id=agent_run_id,
    )
    session.add(message)
    await session.flush()
    return message


async def get_message(*, session: AsyncSession, message_id: str) -> Message | None:
    return await session.get(Message, message_id)


async def unhandled_inbound(*, session: AsyncSession, conversation_id: str) -> list[Message]:
    """Inbound texts no turn has answered yet, oldest first."""
    result = await session.exec(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == MessageDirection.INBOUND,
            col(Message.handled_at).is_(None),
        )
        .order_by(col(Message.created_at), col(Message.id))
    )
    return list(result)


async def mark_handled(
    *, session: AsyncSession, message_ids: Sequence[str], agent_run_id: str | None
) -> None:
    if not message_ids:
        return
    await session.exec(
        update(Message)
        .where(col(Message.id).in_(message_ids))
        .values(handled_at=utcnow(), agent_run_id=agent_run_id)
    )


async def thread(
    *, session: AsyncSession, conversation_id: str, limit: int | None = None
) -> list[Message]:
    """The conversation's messages, oldest first (the newest `limit` of them when given)."""
    statement = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
    )
    if limit is not None:
        statement = statement.limit(limit)
    result = await session.exec(statement)
    return list(reversed(list(result)))


async def advance_status(
    *,
    session: AsyncSession,
    message_id: str,
    status: MessageStatus,
    provider_message_id: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Move a message forward to `status`; False when it already stands at or past it."""
    rank = STATUS_RANK[status]
    earlier = [name for name, r in STATUS_RANK.items() if r < rank]
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if provider_message_id is not None:
        values["provider_message_id"] = provider_message_id
    if error_code is not None:
        values["error_code"] = error_code
    if error_message is not None:
        values["error_message"] = error_message[:500]
    if status == MessageStatus.SENT:
        values["sent_at"] = now
    if status == MessageStatus.DELIVERED:
        values["delivered_at"] = now
    result = await session.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.status).in_(earlier))
        .values(**values)
    )
    if result.rowcount:
        return True
    # A provider id learned late still matters for matching later callbacks.
    if provider_message_id is not None:
        await session.exec(
            update(Message)
            .where(col(Message.id) == message_id, col(Message.provider_message_id).is_(None))
            .values(provider_message_id=provider_message_id)
        )
    return False


async def set_status(*, session: AsyncSession, message_id: str, status: MessageStatus) -> None:
    """Set a status regardless of rank: only for our own bookkeeping before a send."""
    await session.exec(
        update(Message)
        .where(col(Message.id) == message_id)
        .values(status=status, updated_at=utcnow())
    )
