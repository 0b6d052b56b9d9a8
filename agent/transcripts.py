"""Read conversations back: one thread whole, or the newest threads in brief.

Used by `GET /v1/conversations/{id}` and by `smsagent transcripts`; read-only.
"""

from __future__ import annotations

from agent.errors import NotFound
from agent.schemas import (
    AgentRunOut,
    AppointmentOut,
    ContactOut,
    ConversationListItem,
    ConversationOut,
    EventOut,
    MessageOut,
)
from storage import appointments, contacts, conversations, events, messages
from storage.conversations import ConversationFilter
from storage.engine import SessionFactory


async def load_conversation(
    *, sessions: SessionFactory, conversation_id: str, workspace_id: str | None = None
) -> ConversationOut:
    async with sessions() as session:
        conversation = await conversations.get_conversation(
            session=session, conversation_id=conversation_id, workspace_id=workspace_id
        )
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id}")
        contact = await contacts.get_contact(session=session, contact_id=conversation.contact_id)
        assert contact is not None
        appointment = (
            await appointments.get_appointment(
                session=session, appointment_id=conversation.appointment_id
            )
            if conversation.appointment_id
            else None
        )
        thread = await messages.thread(session=session, conversation_id=conversation.id)
        stream = await events.list_events(session=session, conversation_id=conversation.id)
        runs = await events.list_runs(session=session, conversation_id=conversation.id)
    return ConversationOut(
        id=conversation.id,
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
        messages=[MessageOut.model_validate(m, from_attributes=True) for m in thread],
        events=[EventOut.model_validate(e, from_attributes=True) for e in stream],
        agent_runs=[AgentRunOut.model_validate(r, from_attributes=True) for r in runs],
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
        rows = await conversations.list_conversations(
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
        for row in rows
    ]
