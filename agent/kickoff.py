"""Start a conversation: the business texts first, with what the agent should know."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.deps import Deps
from agent.errors import Blocked, InvalidInput, OptedOut
from agent.outbox import queue_text_plan
from agent.phones import mask_phone
from agent.schemas import AppointmentIn, KickoffRequest, KickoffResult
from storage import appointments, contacts, conversations, events
from storage.models import MessageAuthor
from storage.raw import Dialect, Plan, in_session
from storage.workspaces import get_workspace

log = logging.getLogger("smsagent.kickoff")


async def start_conversation(
    deps: Deps,
    request: KickoffRequest,
    *,
    remember: Callable[[Dialect, KickoffResult], Plan[None]] | None = None,
) -> KickoffResult:
    """Upsert the contact and appointment, open the thread with its context, queue the text.

    All of it is one transaction: a refused kickoff (opted out, blocked) leaves nothing behind.
    `remember` writes the result in that transaction too (an idempotent request's answer), so
    the kickoff and the record of it are kept or lost together.
    """
    settings = deps.settings
    sender = request.from_ or settings.from_number
    if sender != settings.from_number:
        raise InvalidInput(
            "from is not a number of this workspace",
            details=[{"field": "from", "message": "not one of this workspace's sender numbers"}],
        )
    contact_in = request.contact
    async with deps.sessions() as session, session.begin():
        workspace = await get_workspace(session=session, workspace_id=deps.workspace_id)
        assert workspace is not None
        contact = await contacts.upsert_contact_by_phone(
            session=session,
            workspace_id=workspace.id,
            phone=request.to,
            fields=contact_in.model_dump(exclude={"custom_fields"}),
            custom_fields=contact_in.custom_fields,
        )
        if contact.opted_out:
            raise OptedOut("the contact opted out of messages from this workspace")
        if contact.blocked:
            raise Blocked("the contact is blocked")
        appointment_id = None
        if request.appointment is not None:
            zone = contact.timezone or workspace.timezone
            appointment = await appointments.upsert_appointment(
                session=session,
                workspace_id=workspace.id,
                contact_id=contact.id,
                external_id=request.appointment.external_id,
                fields=_appointment_fields(request.appointment, zone),
            )
            appointment_id = appointment.id
        await conversations.close_live_conversations(
            session=session, workspace_id=workspace.id, contact_id=contact.id, sender_number=sender
        )
        conversation_id = await conversations.insert_conversation(
            session=session,
            workspace_id=workspace.id,
            contact_id=contact.id,
            sender_number=sender,
            provider=settings.sms_provider,
            appointment_id=appointment_id,
            context=request.context,
        )
        queued = await in_session(
            session,
            lambda d: queue_text_plan(
                d,
                settings,
                workspace_id=workspace.id,
                conversation_id=conversation_id,
                sender=sender,
                to=contact.phone,
                provider=settings.sms_provider,
                text=request.message,
                author=MessageAuthor.API,
            ),
        )
        await in_session(
            session,
            lambda d: events.event_plan(
                d,
                workspace_id=workspace.id,
                conversation_id=conversation_id,
                type="conversation.started",
                data={"source": "api", "appointment_id": appointment_id},
            ),
        )
        message = queued.message
        result = KickoffResult(
            conversation_id=conversation_id,
            message_id=message.id,
            status=message.status,
            segments=message.segments,
        )
        if remember is not None:
            keep = remember
            await in_session(session, lambda d: keep(d, result))
    log.info(
        "kickoff.queued conversation_id=%s message_id=%s to=%s",
        conversation_id,
        result.message_id,
        mask_phone(contact.phone),
    )
    deps.nudge()
    return result


def _appointment_fields(appointment: AppointmentIn, zone: str) -> dict[str, object]:
    """Times without an offset are read in the contact's (else the workspace's) zone."""

    def aware(moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=ZoneInfo(zone))

    start = aware(appointment.start)
    given_zone = (
        appointment.start.tzname() if appointment.start and appointment.start.tzinfo else zone
    )
    return {
        "starts_at": start,
        "ends_at": aware(appointment.end),
        "timezone": given_zone,
        "type": appointment.type,
        "description": appointment.description,
    }
