"""Messages, both directions, and their delivery status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Contact, Conversation, Message, MessageDirection, MessageStatus
from storage.raw import Dialect, run
from storage.types import new_id, utcnow

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


async def find_by_provider_id(
    *, session: AsyncSession, provider: str, provider_message_id: str
) -> Message | None:
    result = await session.exec(
        select(Message).where(
            Message.provider == provider, Message.provider_message_id == provider_message_id
        )
    )
    return result.first()


@dataclass(frozen=True)
class QueuedOutbound:
    id: str
    status: str
    segments: int


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
) -> QueuedOutbound:
    """A queued outbound text, by one INSERT and no row object."""
    now = utcnow()
    message_id = new_id("msg")
    await session.exec(
        insert(Message).values(
            id=message_id,
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
            created_at=now,
            updated_at=now,
        )
    )
    return QueuedOutbound(message_id, MessageStatus.QUEUED, segments)


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


async def unhandled_ids(*, conn: AsyncConnection, conversation_id: str) -> set[str]:
    """Ids of the inbound texts no turn has answered yet (a turn's last look before it commits)."""
    dialect = Dialect(conn.dialect.name)
    result = await run(
        conn,
        dialect,
        "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'inbound' "
        "AND handled_at IS NULL",
        (conversation_id,),
    )
    return {message_id for (message_id,) in result}


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


@dataclass(frozen=True)
class OutboundWithRecipient:
    message: Message
    opted_out: bool
    blocked: bool


async def outbound_with_recipient(
    *, session: AsyncSession, message_id: str
) -> OutboundWithRecipient | None:
    """An outbound message and whether its recipient may be texted, in one query."""
    result = await session.exec(
        select(Message, Contact.opted_out, Contact.blocked)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .where(col(Message.id) == message_id)
    )
    row = result.first()
    if row is None:
        return None
    message, opted_out, blocked = row
    return OutboundWithRecipient(message, bool(opted_out), bool(blocked))


async def claim_for_sending(*, session: AsyncSession, message_id: str) -> bool:
    """Mark a queued message `sending`; False when it is no longer queued."""
    result = await session.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.status) == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENDING, updated_at=utcnow())
    )
    return bool(result.rowcount)


async def set_status(*, session: AsyncSession, message_id: str, status: MessageStatus) -> None:
    """Set a status regardless of rank: only for our own bookkeeping before a send."""
    await session.exec(
        update(Message)
        .where(col(Message.id) == message_id)
        .values(status=status, updated_at=utcnow())
    )
