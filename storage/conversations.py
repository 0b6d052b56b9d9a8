"""Conversations: the thread between one contact and one of our numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, func, insert, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    Appointment,
    Contact,
    Conversation,
    ConversationMode,
    ConversationStatus,
    Message,
    Workspace,
)
from storage.raw import Columns, Dialect, Plan, marks, parse_json, parse_ts
from storage.types import new_id, utcnow

_LIVE = (ConversationStatus.OPEN, ConversationStatus.PENDING)


async def live_conversation_id(
    *, session: AsyncSession, workspace_id: str, contact_id: str, sender_number: str
) -> str | None:
    """The newest conversation that is not closed between this contact and this number."""
    result = await session.exec(
        select(Conversation.id)
        .where(
            Conversation.workspace_id == workspace_id,
            Conversation.contact_id == contact_id,
            Conversation.sender_number == sender_number,
            col(Conversation.status).in_(_LIVE),
        )
        .order_by(col(Conversation.created_at).desc())
        .limit(1)
    )
    return result.first()


async def insert_conversation(
    *,
    session: AsyncSession,
    workspace_id: str,
    contact_id: str,
    sender_number: str,
    provider: str,
    appointment_id: str | None = None,
    context: str | None = None,
) -> str:
    """A new open conversation, by one INSERT and no row object; its id."""
    now = utcnow()
    conversation_id = new_id("conv")
    await session.exec(
        insert(Conversation).values(
            id=conversation_id,
            workspace_id=workspace_id,
            contact_id=contact_id,
            sender_number=sender_number,
            provider=provider,
            appointment_id=appointment_id,
            context=context,
            status=ConversationStatus.OPEN,
            mode=ConversationMode.AGENT,
            created_at=now,
            updated_at=now,
            last_message_at=now,
        )
    )
    return conversation_id


async def close_live_conversations(
    *, session: AsyncSession, workspace_id: str, contact_id: str, sender_number: str
) -> int:
    """Close earlier threads so replies land in the one a kickoff opens."""
    now = utcnow()
    result = await session.exec(
        update(Conversation)
        .where(
            col(Conversation.workspace_id) == workspace_id,
            col(Conversation.contact_id) == contact_id,
            col(Conversation.sender_number) == sender_number,
            col(Conversation.status).in_(_LIVE),
        )
        .values(status=ConversationStatus.CLOSED, updated_at=now)
    )
    return int(result.rowcount)


async def get_conversation(
    *, session: AsyncSession, conversation_id: str, workspace_id: str | None = None
) -> Conversation | None:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or (workspace_id and conversation.workspace_id != workspace_id):
        return None
    return conversation


def touch(dialect: Dialect, conversation_id: str) -> Plan[None]:
    stamp = dialect.ts(utcnow())
    yield (
        "UPDATE conversations SET last_message_at = ?, updated_at = ? WHERE id = ?",
        (stamp, stamp, conversation_id),
    )


def attach_appointment_plan(
    dialect: Dialect, conversation_id: str, appointment_id: str
) -> Plan[None]:
    """The thread is now about this appointment (one just booked in it)."""
    yield (
        "UPDATE conversations SET appointment_id = ?, updated_at = ? WHERE id = ?",
        (appointment_id, dialect.ts(utcnow()), conversation_id),
    )


def summary_plan(dialect: Dialect, conversation_id: str, summary: str, through: str) -> Plan[None]:
    """The running summary now covers the thread up to message `through`."""
    yield (
        "UPDATE conversations SET summary = ?, summary_through = ?, updated_at = ? WHERE id = ?",
        (summary, through, dialect.ts(utcnow()), conversation_id),
    )


def hand_to_person_plan(dialect: Dialect, conversation_id: str, reason: str) -> Plan[None]:
    """The agent stops answering; the thread waits for a person."""
    yield (
        "UPDATE conversations SET mode = 'human', status = 'pending', handoff_reason = ?, "
        "updated_at = ? WHERE id = ?",
        (reason[:500], dialect.ts(utcnow()), conversation_id),
    )


@dataclass(frozen=True)
class ThreadContext:
    workspace: Workspace
    conversation: Conversation
    contact: Contact
    appointment: Appointment | None


_CONVERSATION = Columns(Conversation, "v")
_WORKSPACE = Columns(Workspace, "w")
_CONTACT = Columns(Contact, "c")
_APPOINTMENT = Columns(Appointment, "a")
# Where each table's columns start and end in the joined row.
_CUTS = [0]
for _columns in (_CONVERSATION, _WORKSPACE, _CONTACT, _APPOINTMENT):
    _CUTS.append(_CUTS[-1] + _columns.width)


def thread_context(conversation_id: str) -> Plan[ThreadContext | None]:
    """A conversation with its workspace, contact and appointment, in one query."""
    found = yield (
        f"SELECT {_CONVERSATION.sql}, {_WORKSPACE.sql}, {_CONTACT.sql}, {_APPOINTMENT.sql} "
        "FROM conversations v JOIN workspaces w ON w.id = v.workspace_id "
        "JOIN contacts c ON c.id = v.contact_id "
        "LEFT JOIN appointments a ON a.id = v.appointment_id WHERE v.id = ?",
        (conversation_id,),
    )
    if not found:
        return None
    row = found[0]
    cut = _CUTS
    appointment = row[cut[3] : cut[4]]
    return ThreadContext(
        workspace=_WORKSPACE.load(row[cut[1] : cut[2]]),
        conversation=_CONVERSATION.load(row[cut[0] : cut[1]]),
        contact=_CONTACT.load(row[cut[2] : cut[3]]),
        appointment=_APPOINTMENT.load(appointment) if appointment[0] is not None else None,
    )


@dataclass(frozen=True)
class ConversationSummary:
    conversation: Conversation
    contact: Contact
    message_count: int


@dataclass(frozen=True)
class ConversationFilter:
    status: str | None = None
    mode: str | None = None
    tag: str | None = None
    phone: str | None = None
    updated_since: datetime | None = None
    # Keyset: threads older than this (last_message_at, id), newest first.
    before: tuple[datetime, str] | None = None


async def list_conversations(
    *,
    session: AsyncSession,
    workspace_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    where: ConversationFilter | None = None,
) -> list[ConversationSummary]:
    """Newest activity first, with the contact and how many messages each thread holds."""
    statement = (
        select(Conversation, Contact)
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .order_by(col(Conversation.last_message_at).desc(), col(Conversation.id).desc())
        .limit(limit)
        .offset(offset)
    )
    if workspace_id is not None:
        statement = statement.where(Conversation.workspace_id == workspace_id)
    f = where or ConversationFilter()
    if f.status is not None:
        statement = statement.where(Conversation.status == f.status)
    if f.mode is not None:
        statement = statement.where(Conversation.mode == f.mode)
    if f.phone is not None:
        statement = statement.where(Contact.phone == f.phone)
    if f.updated_since is not None:
        statement = statement.where(col(Conversation.updated_at) >= f.updated_since)
    if f.tag is not None:
        # Tags are a JSON list of strings, written compactly by us: the tag's JSON text is in
        # it exactly when the tag is.
        needle = json.dumps(f.tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(
            cast(col(Contact.tags), String).like(f"%{needle}%", escape="\\")
        )
    if f.before is not None:
        moment, ident = f.before
        statement = statement.where(
            or_(
                col(Conversation.last_message_at) < moment,
                and_(col(Conversation.last_message_at) == moment, col(Conversation.id) < ident),
            )
        )
    rows = list((await session.exec(statement)).all())
    counts: dict[str, int] = {}
    if rows:
        found = await session.exec(
            select(Message.conversation_id, func.count())
            .where(col(Message.conversation_id).in_([c.id for c, _ in rows]))
            .group_by(col(Message.conversation_id))
        )
        counts = {conversation_id: int(n) for conversation_id, n in found}
    return [ConversationSummary(conv, contact, counts.get(conv.id, 0)) for conv, contact in rows]


def set_state_plan(
    dialect: Dialect, conversation_id: str, *, status: str | None, mode: str | None
) -> Plan[None]:
    """Close or reopen the thread, or hand it between the agent and people."""
    sets, params = ["updated_at = ?"], [dialect.ts(utcnow())]
    if status is not None:
        sets.append("status = ?")
        params.append(status)
    if mode is not None:
        sets.append("mode = ?")
        params.append(mode)
        if mode == ConversationMode.AGENT:
            sets.append("handoff_reason = NULL")
    yield (f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", (*params, conversation_id))


@dataclass(frozen=True)
class EarlierThread:
    started_at: datetime
    events: list[tuple[str, dict[str, Any]]]  # (type, data), oldest first


# What an earlier thread came to: enough to remember, never message bodies.
_REMEMBERED = (
    "appointment.confirmed",
    "appointment.rescheduled",
    "appointment.reschedule_requested",
    "appointment.canceled",
    "appointment.booked",
    "conversation.handoff",
    "conversation.emergency",
    "contact.opted_out",
    "contact.opted_in",
    "contact.tagged",
)


def earlier_threads(
    contact_id: str, conversation_id: str, limit: int = 3
) -> Plan[list[EarlierThread]]:
    """The contact's `limit` most recent other threads and what happened in each."""
    threads = yield (
        "SELECT id, created_at FROM conversations WHERE contact_id = ? AND id != ? "
        "ORDER BY created_at DESC LIMIT ?",
        (contact_id, conversation_id, limit),
    )
    if not threads:
        return []
    ids = [str(row[0]) for row in threads]
    found = yield (
        "SELECT conversation_id, type, data FROM events "
        f"WHERE conversation_id IN ({marks(len(ids))}) AND type IN ({marks(len(_REMEMBERED))}) "
        "ORDER BY created_at LIMIT 60",
        (*ids, *_REMEMBERED),
    )
    happened: dict[str, list[tuple[str, dict[str, Any]]]] = {i: [] for i in ids}
    for thread_id, kind, data in found:
        happened[str(thread_id)].append((str(kind), parse_json(data) or {}))
    return [
        EarlierThread(started_at=_aware(row[1]), events=happened[str(row[0])])
        for row in reversed(threads)
    ]


def _aware(value: Any) -> datetime:
    moment = parse_ts(value)
    assert moment is not None
    return moment
