"""Read conversations back: one thread whole, many threads whole (for export), or the newest
threads in brief.

Used by `GET /v1/conversations/{id}` and by `smsagent transcripts`; read-only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.errors import NotFound
from agent.schemas import (
    AgentRunOut,
    AppointmentOut,
    ContactOut,
    ConversationListItem,
    ConversationOut,
    EventOut,
    MediaOut,
    MessageOut,
)
from storage import conversations
from storage.conversations import ConversationFilter
from storage.engine import SessionFactory
from storage.models import (
    AgentRun,
    Appointment,
    Contact,
    Conversation,
    Event,
    Media,
    MediaStatus,
    Message,
)
from storage.raw import Columns, Dialect, marks, rows

_CONVERSATION = Columns(Conversation, "c")
_CONTACT = Columns(Contact, "p")
_APPOINTMENT = Columns(Appointment, "a")
_MESSAGE = Columns(Message, "m")
_EVENT = Columns(Event, "e")
_RUN = Columns(AgentRun, "r")
_MEDIA = Columns(Media, "d")


async def load_conversation(
    *,
    sessions: SessionFactory,
    conversation_id: str,
    workspace_id: str | None = None,
    raw: bool = False,
) -> ConversationOut:
    async with sessions() as session:
        found = await load_many(
            await session.connection(), [conversation_id], workspace_id=workspace_id, raw=raw
        )
    if not found:
        raise NotFound(f"no conversation {conversation_id}")
    return found[0]


async def load_many(
    conn: AsyncConnection,
    ids: Sequence[str],
    *,
    workspace_id: str | None = None,
    raw: bool = False,
) -> list[ConversationOut]:
    """The threads `ids` whole, in that order (unknown ids left out): a fixed number of queries
    however many threads, so an export reads 500 threads in eight round trips."""
    if not ids:
        return []
    dialect = Dialect(conn.dialect.name)
    many = marks(len(ids))
    sql = f"SELECT {_CONVERSATION.sql} FROM conversations c WHERE c.id IN ({many})"
    params: list[Any] = list(ids)
    if workspace_id is not None:
        sql += " AND c.workspace_id = ?"
        params.append(workspace_id)
    threads = [_CONVERSATION.load(r) for r in await rows(conn, dialect, sql, params)]
    if not threads:
        return []
    found = [t.id for t in threads]
    many = marks(len(found))

    async def by_id(columns: Columns[Any], table: str, keys: set[str]) -> dict[str, Any]:
        if not keys:
            return {}
        query = f"SELECT {columns.sql} FROM {table} WHERE id IN ({marks(len(keys))})"
        loaded = [columns.load(r) for r in await rows(conn, dialect, query, sorted(keys))]
        return {item.id: item for item in loaded}

    contacts = await by_id(_CONTACT, "contacts p", {t.contact_id for t in threads})
    visits = await by_id(
        _APPOINTMENT, "appointments a", {t.appointment_id for t in threads if t.appointment_id}
    )

    async def per_thread(columns: Columns[Any], table: str, order: str) -> dict[str, list[Any]]:
        query = (
            f"SELECT {columns.sql} FROM {table} WHERE conversation_id IN ({many}) ORDER BY {order}"
        )
        grouped: dict[str, list[Any]] = defaultdict(list)
        for row in await rows(conn, dialect, query, found):
            item = columns.load(row)
            grouped[item.conversation_id].append(item)
        return grouped

    texts = await per_thread(_MESSAGE, "messages m", "m.created_at, m.id")
    happened = await per_thread(_EVENT, "events e", "e.created_at, e.id")
    runs = await per_thread(_RUN, "agent_runs r", "r.started_at, r.id")
    kept = await per_thread(_MEDIA, "media d", "d.message_id, d.position")
    people = await _people(conn, dialect, texts)
    by_thread = {t.id: t for t in threads}
    return [
        _conversation_out(
            by_thread[i],
            contacts[by_thread[i].contact_id],
            visits.get(by_thread[i].appointment_id or ""),
            texts.get(i, []),
            happened.get(i, []),
            runs.get(i, []),
            people,
            raw=raw,
            media=kept.get(i, []),
        )
        for i in ids
        if i in by_thread
    ]


async def _people(
    conn: AsyncConnection, dialect: Dialect, texts: dict[str, list[Message]]
) -> dict[str, str]:
    """Team members who wrote any of these texts: id -> name (or email)."""
    ids = sorted({m.sender_user_id for ms in texts.values() for m in ms if m.sender_user_id})
    if not ids:
        return {}
    found = await rows(
        conn, dialect, f"SELECT id, name, email FROM users WHERE id IN ({marks(len(ids))})", ids
    )
    return {str(r[0]): str(r[1] or r[2]) for r in found}


def _conversation_out(
    conversation: Conversation,
    contact: Contact,
    appointment: Appointment | None,
    thread: list[Message],
    stream: list[Event],
    runs: list[AgentRun],
    people: dict[str, str],
    *,
    raw: bool,
    media: Sequence[Media] = (),
) -> ConversationOut:
    # A person's reply through the API names its author in the event that records it.
    named = {
        str(e.data.get("message_id")): str(e.data["author_name"])
        for e in stream
        if e.type == "conversation.human_reply" and e.data.get("author_name")
    }
    attached: dict[str, list[MediaOut]] = defaultdict(list)
    for item in media:
        attached[item.message_id].append(_media_out(item))
    return ConversationOut(
        id=conversation.id,
        workspace_id=conversation.workspace_id,
        status=conversation.status,
        mode=conversation.mode,
        sender_number=conversation.sender_number,
        provider=conversation.provider,
        context=conversation.context,
        handoff_reason=conversation.handoff_reason,
        summary=conversation.summary,
        created_at=conversation.created_at,
        last_message_at=conversation.last_message_at,
        contact=ContactOut.model_validate(contact, from_attributes=True),
        appointment=(
            AppointmentOut(
                id=appointment.id,
                external_id=appointment.external_id,
                start=appointment.starts_at,
                end=appointment.ends_at,
                type=appointment.type,
                description=appointment.description,
                status=appointment.status,
                requested_start=appointment.requested_start,
                history=appointment.history or [],
            )
            if appointment
            else None
        ),
        messages=[
            MessageOut.model_validate(m, from_attributes=True).model_copy(
                update={
                    "author_name": people.get(m.sender_user_id or "") or named.get(m.id),
                    "hidden": bool(m.hidden),
                    "media": attached.get(m.id, []),
                }
            )
            for m in thread
        ],
        events=[EventOut.model_validate(e, from_attributes=True) for e in stream],
        agent_runs=[
            AgentRunOut.model_validate(r, from_attributes=True).model_copy(
                update={"exchange": r.exchange if raw else None}
            )
            for r in runs
        ],
    )


def _media_out(item: Media) -> MediaOut:
    stored = item.status == MediaStatus.STORED
    return MediaOut(
        id=item.id,
        position=item.position,
        status=item.status,
        content_type=item.content_type,
        size_bytes=item.size_bytes,
        sha256=item.sha256,
        error=item.error,
        storage=item.storage,
        key=item.key,
        url=f"/v1/media/{item.id}" if stored else None,
    )


async def list_recent(
    *,
    sessions: SessionFactory,
    workspace_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    where: ConversationFilter | None = None,
) -> list[ConversationListItem]:
    async with sessions() as session:
        found = await conversations.list_conversations(
            session=session, workspace_id=workspace_id, limit=limit, offset=offset, where=where
        )
    return [
        ConversationListItem(
            id=row.conversation.id,
            status=row.conversation.status,
            mode=row.conversation.mode,
            contact_phone=row.contact.phone,
            contact_name=" ".join(n for n in (row.contact.first_name, row.contact.last_name) if n)
            or None,
            message_count=row.message_count,
            last_message_at=row.conversation.last_message_at,
        )
        for row in found
    ]
