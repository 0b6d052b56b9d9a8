"""The inbox's messages: searched (one SQL statement a page, in either dialect), fetched with
their contacts, hidden from the inbox's view, and who sent and canceled them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, not_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.inbox_threads import contains
from storage.models import Conversation, Event, Message, User, Workspace
from storage.raw import Dialect, Plan
from storage.types import utcnow


@dataclass(frozen=True)
class MessageFilter:
    # Each must be in the body (any case).
    words: Sequence[str] = ()
    direction: str | None = None
    statuses: Sequence[str] = ()
    from_number: str | None = None
    to_number: str | None = None
    contact_id: str | None = None
    conversation_id: str | None = None
    sender_user_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    # Only messages that were given a time to go (asked for, or held for quiet hours).
    scheduled: bool = False
    scheduled_from: datetime | None = None
    scheduled_to: datetime | None = None


def _message_conditions(workspace_id: str, where: MessageFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        col(Message.workspace_id) == workspace_id,
        not_(col(Message.hidden)),
    ]
    for word in where.words:
        conditions.append(col(Message.body).ilike(contains(word), escape="\\"))
    for column, value in (
        (Message.direction, where.direction),
        (Message.from_number, where.from_number),
        (Message.to_number, where.to_number),
        (Message.conversation_id, where.conversation_id),
        (Message.sender_user_id, where.sender_user_id),
        (Conversation.contact_id, where.contact_id),
    ):
        if value is not None:
            conditions.append(col(column) == value)
    if where.statuses:
        conditions.append(col(Message.status).in_(list(where.statuses)))
    if where.created_from is not None:
        conditions.append(col(Message.created_at) >= where.created_from)
    if where.created_to is not None:
        conditions.append(col(Message.created_at) <= where.created_to)
    if where.scheduled:
        conditions.append(col(Message.send_at).is_not(None))
    if where.scheduled_from is not None:
        conditions.append(col(Message.send_at) >= where.scheduled_from)
    if where.scheduled_to is not None:
        conditions.append(col(Message.send_at) <= where.scheduled_to)
    return conditions


async def find_messages(
    *,
    session: AsyncSession,
    workspace_id: str,
    where: MessageFilter,
    limit: int,
    offset: int = 0,
) -> list[tuple[Message, str]]:
    """The workspace's messages that match, with their contact's id: newest first, or for
    scheduled ones the next to go first."""
    statement = (
        select(Message, Conversation.contact_id)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(*_message_conditions(workspace_id, where))
        .order_by(
            col(Message.send_at).asc() if where.scheduled else col(Message.created_at).desc(),
            col(Message.id).asc() if where.scheduled else col(Message.id).desc(),
        )
        .limit(limit)
        .offset(offset)
    )
    return [(message, str(contact_id)) for message, contact_id in await session.exec(statement)]


async def message_in(
    *, session: AsyncSession, workspace_id: str, message_id: str
) -> tuple[Message, str] | None:
    """One of the workspace's messages not hidden, with its contact's id."""
    statement = (
        select(Message, Conversation.contact_id)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(
            col(Message.id) == message_id,
            col(Message.workspace_id) == workspace_id,
            not_(col(Message.hidden)),
        )
    )
    row = (await session.exec(statement, execution_options={"populate_existing": True})).first()
    return None if row is None else (row[0], str(row[1]))


async def user_names(*, session: AsyncSession, user_ids: Sequence[str]) -> dict[str, str]:
    """Each user's name as the inbox shows it (their email when they have no name)."""
    ids = sorted({ident for ident in user_ids if ident})
    if not ids:
        return {}
    found = await session.exec(select(User.id, User.name, User.email).where(col(User.id).in_(ids)))
    return {ident: name or email for ident, name, email in found}


async def cancellations(
    *, session: AsyncSession, conversation_ids: Sequence[str]
) -> dict[str, str | None]:
    """Message id -> who canceled it (None: not a team member) for the threads' canceled
    messages."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    found = await session.exec(
        select(Event.data).where(
            col(Event.conversation_id).in_(ids), col(Event.type) == "message.canceled"
        )
    )
    canceled: dict[str, str | None] = {}
    for data in found:
        if isinstance(data, dict) and data.get("message_id"):
            canceled[str(data["message_id"])] = data.get("user_id")
    return canceled


def hide_plan(dialect: Dialect, message_id: str) -> Plan[bool]:
    """Take the message out of the inbox's view; False when it already was."""
    hidden = yield (
        "UPDATE messages SET hidden = ?, updated_at = ? WHERE id = ? AND hidden = ? RETURNING id",
        (dialect.flag(True), dialect.ts(utcnow()), message_id, dialect.flag(False)),
    )
    return bool(hidden)


@dataclass(frozen=True)
class CallbackTarget:
    message: Message
    contact_id: str
    # The workspace's webhook secret, to sign with when it has one.
    secret: str | None


async def callback_target(*, session: AsyncSession, message_id: str) -> CallbackTarget | None:
    statement = (
        select(Message, Conversation.contact_id, Workspace.webhook_secret)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .join(Workspace, col(Workspace.id) == col(Message.workspace_id))
        .where(col(Message.id) == message_id)
    )
    row = (await session.exec(statement)).first()
    return None if row is None else CallbackTarget(row[0], str(row[1]), row[2])
