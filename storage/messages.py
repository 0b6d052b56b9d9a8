"""Messages, both directions, and their delivery status."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Message, MessageStatus
from storage.raw import Columns, Dialect, Plan, marks, parse_json, run_plan
from storage.types import new_id, utcnow

# Carriers report out of order; a status only ever moves to a later rank.
STATUS_RANK: dict[str, int] = {
    MessageStatus.RECEIVED: 0,
    MessageStatus.QUEUED: 1,
    MessageStatus.SCHEDULED: 1,
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


def add_outbound_plan(
    dialect: Dialect,
    *,
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
    message_type: str | None = None,
    origin: str | None = None,
    send_at: datetime | None = None,
    message_id: str | None = None,
) -> Plan[QueuedOutbound]:
    """A queued outbound text (`scheduled` when it waits for `send_at`), by one INSERT."""
    stamp = dialect.ts(utcnow())
    message_id = message_id or new_id("msg")
    status = MessageStatus.QUEUED if send_at is None else MessageStatus.SCHEDULED
    yield (
        "INSERT INTO messages (id, workspace_id, conversation_id, direction, author, body, "
        "media_urls, from_number, to_number, provider, status, segments, encoding, cost_cents, "
        "agent_run_id, message_type, origin, send_at, created_at, updated_at) "
        "VALUES (?, ?, ?, 'outbound', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            workspace_id,
            conversation_id,
            str(author),
            body,
            dialect.json(list(media_urls)),
            from_number,
            to_number,
            provider,
            str(status),
            segments,
            encoding,
            cost_cents,
            agent_run_id,
            message_type,
            origin,
            None if send_at is None else dialect.ts(send_at),
            stamp,
            stamp,
        ),
    )
    return QueuedOutbound(message_id, status, segments)


async def get_message(*, session: AsyncSession, message_id: str) -> Message | None:
    return await session.get(Message, message_id)


_MESSAGE = Columns(Message, "m")


def unhandled_inbound(conversation_id: str) -> Plan[list[Message]]:
    """Inbound texts no turn has answered yet, oldest first."""
    found = yield (
        f"SELECT {_MESSAGE.sql} FROM messages m WHERE m.conversation_id = ? "
        "AND m.direction = 'inbound' AND m.handled_at IS NULL ORDER BY m.created_at, m.id",
        (conversation_id,),
    )
    return [_MESSAGE.load(row) for row in found]


def unhandled_ids(conversation_id: str) -> Plan[set[str]]:
    """Ids of the inbound texts no turn has answered yet (a turn's last look before it commits)."""
    found = yield (
        "SELECT id FROM messages WHERE conversation_id = ? AND direction = 'inbound' "
        "AND handled_at IS NULL",
        (conversation_id,),
    )
    return {message_id for (message_id,) in found}


def mark_handled(
    dialect: Dialect, message_ids: Sequence[str], agent_run_id: str | None
) -> Plan[None]:
    if message_ids:
        yield (
            f"UPDATE messages SET handled_at = ?, agent_run_id = ? "
            f"WHERE id IN ({marks(len(message_ids))})",
            (dialect.ts(utcnow()), agent_run_id, *message_ids),
        )


async def thread(
    *, session: AsyncSession, conversation_id: str, limit: int | None = None
) -> list[Message]:
    return await run_plan(await session.connection(), thread_plan(conversation_id, limit))


def thread_plan(conversation_id: str, limit: int | None = None) -> Plan[list[Message]]:
    """The conversation's messages, oldest first (the newest `limit` of them when given)."""
    found = yield (
        f"SELECT {_MESSAGE.sql} FROM messages m WHERE m.conversation_id = ? "
        "ORDER BY m.created_at DESC, m.id DESC" + (" LIMIT ?" if limit is not None else ""),
        (conversation_id, limit) if limit is not None else (conversation_id,),
    )
    return [_MESSAGE.load(row) for row in reversed(found)]


def advance_status_plan(
    dialect: Dialect,
    message_id: str,
    status: MessageStatus,
    *,
    provider_message_id: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Plan[bool]:
    """Move a message forward to `status`; False when it already stands at or past it."""
    rank = STATUS_RANK[status]
    earlier = [str(name) for name, r in STATUS_RANK.items() if r < rank]
    stamp = dialect.ts(utcnow())
    sets, params = ["status = ?", "updated_at = ?"], [str(status), stamp]
    for column, value in (
        ("provider_message_id", provider_message_id),
        ("error_code", error_code),
        ("error_message", error_message[:500] if error_message is not None else None),
        ("sent_at", stamp if status == MessageStatus.SENT else None),
        ("delivered_at", stamp if status == MessageStatus.DELIVERED else None),
    ):
        if value is not None:
            sets.append(f"{column} = ?")
            params.append(value)
    moved = yield (
        f"UPDATE messages SET {', '.join(sets)} "
        f"WHERE id = ? AND status IN ({marks(len(earlier))}) RETURNING id",
        (*params, message_id, *earlier),
    )
    if moved:
        return True
    # A provider id learned late still matters for matching later callbacks.
    if provider_message_id is not None:
        yield (
            "UPDATE messages SET provider_message_id = ? "
            "WHERE id = ? AND provider_message_id IS NULL",
            (provider_message_id, message_id),
        )
    return False


@dataclass(frozen=True)
class Outbound:
    """An outbound message as a send needs it, with whether its recipient may be texted."""

    id: str
    workspace_id: str
    conversation_id: str
    contact_id: str
    author: str
    status: str
    body: str
    media_urls: tuple[str, ...]
    from_number: str
    to_number: str
    provider: str
    opted_out: bool
    blocked: bool
    # Whether anyone is to hear of the send's outcome: its workspace's webhook, or the
    # callback URL its sender gave.
    hooked: bool = True
    # The number is a landline (the inbox's contact profile says so): it cannot take texts.
    landline: bool = False


def claim_for_sending(
    dialect: Dialect, message_id: str, may_send: Callable[[Outbound], bool]
) -> Plan[tuple[Outbound | None, bool]]:
    """Read an outbound message and, when it is queued and `may_send` allows, mark it
    `sending`: (the message as read, or None; whether this call claimed it)."""
    found = yield (
        "SELECT m.id, m.workspace_id, m.conversation_id, c.id, m.author, m.status, m.body, "
        "m.media_urls, m.from_number, m.to_number, m.provider, c.opted_out, c.blocked, "
        "(w.webhook_url IS NOT NULL OR m.status_callback IS NOT NULL), c.profile "
        "FROM messages m JOIN conversations v ON v.id = m.conversation_id "
        "JOIN contacts c ON c.id = v.contact_id JOIN workspaces w ON w.id = m.workspace_id "
        "WHERE m.id = ?",
        (message_id,),
    )
    if not found:
        return None, False
    (ident, workspace_id, conversation_id, contact_id, author, status, body) = found[0][:7]
    media_urls, from_number, to_number, provider, opted_out, blocked, hooked, profile = found[0][7:]
    outbound = Outbound(
        id=ident,
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        author=author,
        status=status,
        body=body,
        media_urls=tuple(parse_json(media_urls) or ()),
        from_number=from_number,
        to_number=to_number,
        provider=provider,
        opted_out=bool(opted_out),
        blocked=bool(blocked),
        hooked=bool(hooked),
        landline=bool((parse_json(profile) or {}).get("landline")),
    )
    waiting = (MessageStatus.QUEUED, MessageStatus.SCHEDULED)
    if outbound.status not in waiting or not may_send(outbound):
        return outbound, False
    claimed = yield (
        "UPDATE messages SET status = 'sending', updated_at = ? "
        "WHERE id = ? AND status IN ('queued', 'scheduled') RETURNING id",
        (dialect.ts(utcnow()), message_id),
    )
    return outbound, bool(claimed)


def cancel_scheduled_plan(dialect: Dialect, message_id: str) -> Plan[bool]:
    """Cancel a message still waiting for its time; False when it is no longer waiting."""
    canceled = yield (
        "UPDATE messages SET status = 'canceled', error_code = 'canceled', updated_at = ? "
        "WHERE id = ? AND status = 'scheduled' RETURNING id",
        (dialect.ts(utcnow()), message_id),
    )
    return bool(canceled)


def reported_plan(message_id: str) -> Plan[tuple[Message, str, bool] | None]:
    """The message as stored, its contact's id and whether its workspace has a webhook, when
    someone is to be told of it (that webhook, or the message's `status_callback`): one
    look-up by primary keys; None otherwise."""
    found = yield (
        f"SELECT {_MESSAGE.sql}, v.contact_id, w.webhook_url IS NOT NULL FROM messages m "
        "JOIN workspaces w ON w.id = m.workspace_id "
        "JOIN conversations v ON v.id = m.conversation_id "
        "WHERE m.id = ? AND (w.webhook_url IS NOT NULL OR m.status_callback IS NOT NULL)",
        (message_id,),
    )
    if not found:
        return None
    row = found[0]
    width = _MESSAGE.width
    return _MESSAGE.load(row[:width]), str(row[width]), bool(row[width + 1])


def requeue_message(dialect: Dialect, message_id: str) -> Plan[None]:
    """Back to `queued` regardless of rank: only for our own bookkeeping before a retry."""
    yield (
        "UPDATE messages SET status = 'queued', updated_at = ? WHERE id = ?",
        (dialect.ts(utcnow()), message_id),
    )
