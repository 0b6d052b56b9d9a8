"""Texts the business sends: a kickoff that opens a thread, or a message in one.

Every API that sends (the native `/v1`, and the Avoca, HelloAnnie and Avaamo compatible routes)
comes down to one `Outgoing` and `send`: the contact and appointment are upserted, the thread is
opened or continued, consent and quiet hours are checked, and the text is queued — all in one
transaction, so a refused send leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.composer import estimate_cost
from agent.deps import Deps
from agent.errors import Blocked, Conflict, InvalidInput, NotFound, OptedOut
from agent.outbox import queue_text_plan
from agent.phones import mask_phone
from agent.quiet import next_allowed, parse_window, recipient_zone
from agent.schemas import AppointmentIn, ContactIn, KickoffRequest, KickoffResult, TextRequest
from storage import appointments, contacts, conversations, events
from storage.models import Contact, MessageAuthor, MessageType
from storage.raw import Dialect, Plan, in_session
from storage.types import new_id, utcnow
from storage.workspaces import get_workspace, sender_numbers

log = logging.getLogger("smsagent.kickoff")

# Shortens the links of a text once its message id is known: (dialect, text, conversation id,
# message id) -> the text with its links shortened.
Shorten = Callable[[Dialect, str, str, str], Plan[str]]


@dataclass(frozen=True)
class Outgoing:
    """One text the business sends, whichever API asked for it."""

    to: str  # E.164
    text: str
    sender: str | None = None
    # The request field that named the sender, for the error when it is not ours.
    sender_field: str = "from"
    contact: ContactIn = field(default_factory=ContactIn)
    appointment: AppointmentIn | None = None
    context: str | None = None
    message_type: MessageType = MessageType.CONVERSATIONAL
    media_urls: Sequence[str] = ()
    send_at: datetime | None = None
    # "v1", "avoca", "helloannie", "avaamo": status webhooks answer in that API's shape.
    origin: str = "v1"
    # Continue this thread (it must be the workspace's, with this recipient).
    conversation_id: str | None = None
    # A kickoff starts a new thread (closing the live one); a plain message continues it.
    new_thread: bool = True
    author: MessageAuthor = MessageAuthor.API
    shorten: Shorten | None = None


@dataclass(frozen=True)
class Sent:
    conversation_id: str
    message_id: str
    status: str  # queued | scheduled
    segments: int
    cost_cents: float | None
    send_at: datetime | None  # when it goes, if it waits
    new_conversation: bool


async def send(
    deps: Deps,
    workspace_id: str,
    outgoing: Outgoing,
    *,
    remember: Callable[[Dialect, Sent], Plan[None]] | None = None,
) -> Sent:
    """Queue `outgoing` for the workspace; `remember` writes the result in the same transaction
    (an idempotent request's answer), so the send and the record of it are kept or lost
    together."""
    settings = deps.settings
    contact_in = outgoing.contact
    async with deps.sessions() as session, session.begin():
        workspace = await get_workspace(session=session, workspace_id=workspace_id)
        if workspace is None:
            raise NotFound("no such workspace")
        numbers = await sender_numbers(session=session, workspace_id=workspace.id)
        sender = outgoing.sender or (numbers[0].number if numbers else None)
        provider = next((n.provider for n in numbers if n.number == sender), None)
        if sender is None or provider is None:
            raise InvalidInput(
                f"{outgoing.sender_field} is not a number of this workspace",
                details=[
                    {
                        "field": outgoing.sender_field,
                        "message": "not one of this workspace's sender numbers",
                    }
                ],
            )
        contact = await contacts.upsert_contact_by_phone(
            session=session,
            workspace_id=workspace.id,
            phone=outgoing.to,
            fields=contact_in.model_dump(exclude={"custom_fields", "marketing_consent"}),
            custom_fields=contact_in.custom_fields,
        )
        _record_consent(contact, contact_in.marketing_consent)
        if contact.opted_out:
            raise OptedOut("the contact opted out of messages from this workspace")
        if contact.blocked:
            raise Blocked("the contact is blocked")
        if contact.profile.get("landline"):
            raise Conflict(
                "the contact's number is a landline, which cannot receive texts",
                code="contact_landline",
            )
        if outgoing.message_type == MessageType.MARKETING and contact.marketing_consent_at is None:
            raise Conflict(
                "marketing texts need the contact's recorded consent",
                code="marketing_consent_missing",
                details=[{"field": "contact.marketing_consent", "message": "not recorded"}],
            )
        appointment_id = None
        if outgoing.appointment is not None:
            zone = contact.timezone or workspace.timezone
            appointment = await appointments.upsert_appointment(
                session=session,
                workspace_id=workspace.id,
                contact_id=contact.id,
                external_id=outgoing.appointment.external_id,
                fields=_appointment_fields(outgoing.appointment, zone),
            )
            appointment_id = appointment.id
        conversation_id, new_conversation = await _thread(
            session, outgoing, workspace.id, contact, sender, provider, appointment_id
        )
        send_at = _when(outgoing, contact, workspace.timezone, parse_window(settings.send_window))
        message_id = new_id("msg")
        text = outgoing.text
        if outgoing.shorten is not None:
            shorten = outgoing.shorten
            text = await in_session(
                session, lambda d: shorten(d, outgoing.text, conversation_id, message_id)
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
                provider=provider,
                text=text,
                author=outgoing.author,
                media_urls=outgoing.media_urls,
                message_type=outgoing.message_type,
                origin=outgoing.origin,
                send_at=send_at,
                message_id=message_id,
            ),
        )
        if new_conversation:
            await in_session(
                session,
                lambda d: events.event_plan(
                    d,
                    workspace_id=workspace.id,
                    conversation_id=conversation_id,
                    type="conversation.started",
                    data={"source": outgoing.origin, "appointment_id": appointment_id},
                ),
            )
        if send_at is not None:
            await in_session(
                session,
                lambda d: events.event_plan(
                    d,
                    workspace_id=workspace.id,
                    conversation_id=conversation_id,
                    type="message.scheduled",
                    data={"message_id": message_id, "send_at": send_at.isoformat()},
                ),
            )
        message = queued.message
        result = Sent(
            conversation_id=conversation_id,
            message_id=message.id,
            status=message.status,
            segments=message.segments,
            cost_cents=estimate_cost(
                message.segments, per_segment_cents=settings.sms_cost_per_segment_cents
            ),
            send_at=send_at,
            new_conversation=new_conversation,
        )
        if remember is not None:
            keep = remember
            await in_session(session, lambda d: keep(d, result))
    log.info(
        "api.send_queued conversation_id=%s message_id=%s status=%s to=%s origin=%s",
        conversation_id,
        result.message_id,
        result.status,
        mask_phone(contact.phone),
        outgoing.origin,
    )
    if send_at is None:
        deps.nudge()
    return result


async def start_conversation(
    deps: Deps,
    workspace_id: str,
    request: KickoffRequest,
    *,
    text: str | None = None,
    remember: Callable[[Dialect, KickoffResult], Plan[None]] | None = None,
) -> KickoffResult:
    """The native kickoff: open a thread with the customer, with what the agent should know."""

    def result_of(sent: Sent) -> KickoffResult:
        return KickoffResult(
            conversation_id=sent.conversation_id,
            message_id=sent.message_id,
            status=sent.status,
            segments=sent.segments,
            send_at=sent.send_at,
        )

    keep = None
    if remember is not None:
        keeping = remember

        def keep(dialect: Dialect, sent: Sent) -> Plan[None]:
            return keeping(dialect, result_of(sent))

    outgoing = outgoing_of(request, text, appointment=request.appointment, context=request.context)
    sent = await send(deps, workspace_id, outgoing, remember=keep)
    return result_of(sent)


def outgoing_of(request: TextRequest, text: str | None, **more: Any) -> Outgoing:
    """A native API request's text as an `Outgoing` (`text`: the message, or its template
    filled in); `more` sets the rest (`new_thread=False` to continue the live thread)."""
    message = request.message if text is None else text
    assert message is not None  # a request gives a message or a template
    return Outgoing(
        to=request.to,
        text=message,
        sender=request.from_,
        contact=request.contact,
        message_type=request.message_type,
        media_urls=request.media_urls,
        send_at=request.send_at,
        **more,
    )


async def _thread(
    session: AsyncSession,
    outgoing: Outgoing,
    workspace_id: str,
    contact: Contact,
    sender: str,
    provider: str,
    appointment_id: str | None,
) -> tuple[str, bool]:
    """The conversation the text goes in, and whether it is new."""
    if outgoing.conversation_id is not None:
        conversation = await conversations.get_conversation(
            session=session, conversation_id=outgoing.conversation_id, workspace_id=workspace_id
        )
        if conversation is None or conversation.contact_id != contact.id:
            raise NotFound(f"no conversation {outgoing.conversation_id} with this recipient")
        if appointment_id is not None:
            await in_session(
                session,
                lambda d: conversations.attach_appointment_plan(d, conversation.id, appointment_id),
            )
        return conversation.id, False
    if not outgoing.new_thread:
        live = await conversations.live_conversation_id(
            session=session, workspace_id=workspace_id, contact_id=contact.id, sender_number=sender
        )
        if live is not None:
            return live, False
    else:
        await conversations.close_live_conversations(
            session=session, workspace_id=workspace_id, contact_id=contact.id, sender_number=sender
        )
    conversation_id = await conversations.insert_conversation(
        session=session,
        workspace_id=workspace_id,
        contact_id=contact.id,
        sender_number=sender,
        provider=provider,
        appointment_id=appointment_id,
        context=outgoing.context,
    )
    return conversation_id, True


def _when(
    outgoing: Outgoing, contact: Contact, workspace_zone: str, window: tuple[time, time]
) -> datetime | None:
    """When the text goes: None for now; the asked time, or the next morning when it would
    land in the recipient's quiet hours (an alert goes when asked)."""
    now = utcnow()
    asked = None if outgoing.send_at is None else outgoing.send_at.astimezone(UTC)
    if asked is not None and asked <= now:
        asked = None
    if outgoing.message_type == MessageType.ALERT:
        return asked
    zone = recipient_zone(
        phone=contact.phone, contact_zone=contact.timezone, workspace_zone=workspace_zone
    )
    held = next_allowed(asked or now, zone, window)
    return held or asked


def _record_consent(contact: Contact, consent: bool | None) -> None:
    if consent is True and contact.marketing_consent_at is None:
        contact.marketing_consent_at = utcnow()
    elif consent is False:
        contact.marketing_consent_at = None


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
