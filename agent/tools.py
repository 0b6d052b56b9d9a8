"""The agent's tools: small async functions whose docstrings are what the model reads.

Each acts only on the conversation in the runtime context, validates its input in code, records
an Event, and answers with a short sentence the model can act on. A bad call changes nothing and
says why, so the model can recover.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from langchain.tools import ToolRuntime, tool
from langchain_core.tools import BaseTool
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.context import TurnContext
from agent.prompting import format_when
from storage import appointments, contacts, conversations, events
from storage.models import AppointmentStatus
from storage.raw import in_session
from storage.types import utcnow

_TAG = re.compile(r"^[a-z0-9][a-z0-9 _:-]{0,39}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,59}$")
_CLOSED = (AppointmentStatus.CANCELED,)

Runtime = ToolRuntime[TurnContext]


@tool
async def confirm_appointment(runtime: Runtime) -> str:
    """Confirm this customer's appointment. Call it when they clearly say they will come."""
    ctx = runtime.context
    if ctx.appointment_id is None:
        return "There is no appointment on file for this customer; nothing was confirmed."
    appointment_id = ctx.appointment_id
    async with ctx.sessions() as session, session.begin():
        appointment = await appointments.get_appointment(
            session=session, appointment_id=ctx.appointment_id
        )
        if appointment is None or appointment.status in _CLOSED:
            return "That appointment was canceled; it cannot be confirmed. Offer to hand off."
        if appointment.status == AppointmentStatus.CONFIRMED:
            return "The appointment was already confirmed. Nothing changed."
        await in_session(
            session,
            lambda d: appointments.status_plan(d, appointment_id, AppointmentStatus.CONFIRMED),
        )
        await _record(ctx, session, "appointment.confirmed", {"appointment_id": appointment.id})
    return "Confirmed. Tell the customer their appointment is confirmed."


@tool
async def reschedule_appointment(new_start: str, runtime: Runtime) -> str:
    """Ask to move this customer's appointment to a new start time the customer gave.

    new_start: the new date and time in ISO-8601, e.g. 2025-03-12T15:00 (customer's local time
    unless an offset is given). The office confirms the new time; say so to the customer.
    """
    ctx = runtime.context
    if ctx.appointment_id is None:
        return "There is no appointment on file to move. Offer to hand off to a person."
    appointment_id = ctx.appointment_id
    try:
        requested = datetime.fromisoformat(new_start.strip())
    except (ValueError, AttributeError):
        return (
            f"'{new_start}' is not an ISO-8601 date and time like 2025-03-12T15:00. "
            "Ask the customer for a specific day and time."
        )
    if requested.tzinfo is None:
        requested = requested.replace(tzinfo=ZoneInfo(ctx.timezone))
    now = utcnow()
    if requested < now:
        return "That time is in the past. Ask the customer for a future day and time."
    if requested > now + timedelta(days=366):
        return "That time is more than a year away. Ask the customer to pick a nearer date."
    async with ctx.sessions() as session, session.begin():
        appointment = await appointments.get_appointment(
            session=session, appointment_id=ctx.appointment_id
        )
        if appointment is None or appointment.status in _CLOSED:
            return "That appointment was canceled; it cannot be moved. Offer to hand off."
        await in_session(
            session,
            lambda d: appointments.status_plan(
                d, appointment_id, AppointmentStatus.RESCHEDULE_REQUESTED, requested
            ),
        )
        await _record(
            ctx,
            session,
            "appointment.reschedule_requested",
            {"appointment_id": appointment.id, "requested_start": requested.isoformat()},
        )
    when = format_when(requested, ctx.timezone)
    return f"Recorded a request to move it to {when}. Tell the customer the office will confirm."


@tool
async def cancel_appointment(reason: str, runtime: Runtime) -> str:
    """Cancel this customer's appointment. Only when they clearly ask to cancel.

    reason: a few words on why, in the customer's terms.
    """
    ctx = runtime.context
    if ctx.appointment_id is None:
        return "There is no appointment on file to cancel."
    appointment_id = ctx.appointment_id
    async with ctx.sessions() as session, session.begin():
        appointment = await appointments.get_appointment(
            session=session, appointment_id=ctx.appointment_id
        )
        if appointment is None:
            return "There is no appointment on file to cancel."
        if appointment.status == AppointmentStatus.CANCELED:
            return "The appointment was already canceled. Nothing changed."
        await in_session(
            session,
            lambda d: appointments.status_plan(d, appointment_id, AppointmentStatus.CANCELED),
        )
        await _record(
            ctx,
            session,
            "appointment.canceled",
            {"appointment_id": appointment.id, "reason": _clip(reason, 300)},
        )
    return "Canceled. Tell the customer it is canceled and they can text to book again."


@tool
async def handoff_to_human(reason: str, runtime: Runtime) -> str:
    """Hand this conversation to a person. The agent stops replying until a person is done.

    reason: why a person is needed, in a few words (e.g. "asks about billing", "tooth pain").
    """
    ctx = runtime.context
    reason = _clip(reason, 300) or "no reason given"
    async with ctx.sessions() as session, session.begin():
        await in_session(
            session, lambda d: conversations.hand_to_person_plan(d, ctx.conversation_id, reason)
        )
        await _record(ctx, session, "conversation.handoff", {"reason": reason})
    return "A person will take over. Tell the customer someone will follow up shortly."


@tool
async def tag_contact(tag: str, runtime: Runtime) -> str:
    """Add a short label to this customer, e.g. "prefers-mornings" or "new-patient".

    tag: lowercase letters, digits, spaces, '-', '_' or ':', at most 40 characters.
    """
    ctx = runtime.context
    normalized = " ".join(str(tag).strip().lower().split())
    if not _TAG.match(normalized):
        return "Tags are 1-40 lowercase letters, digits, spaces, '-', '_' or ':'. Nothing added."
    async with ctx.sessions() as session, session.begin():
        added = await contacts.add_tag(session=session, contact_id=ctx.contact_id, tag=normalized)
        if added:
            await _record(ctx, session, "contact.tagged", {"tag": normalized})
    return f"Tagged '{normalized}'." if added else f"Already tagged '{normalized}'."


@tool
async def log_event(type: str, context: str, runtime: Runtime, revenue: float | None = None) -> str:
    """Record something the business should know about this conversation.

    type: a short name such as "lead", "quote_requested", "complaint", "insurance_question".
    context: one or two sentences of what happened.
    revenue: money involved, in dollars, if any (e.g. a quote the customer accepted).
    """
    ctx = runtime.context
    kind = str(type).strip().lower().replace(" ", "_")
    if not _EVENT_TYPE.match(kind):
        return "type must be a short lowercase name like 'lead' or 'quote_requested'."
    if revenue is not None and (not math.isfinite(revenue) or revenue < 0 or revenue > 1e7):
        return "revenue must be a non-negative amount in dollars. Nothing recorded."
    async with ctx.sessions() as session, session.begin():
        await _record(
            ctx,
            session,
            f"custom.{kind}",
            {"context": _clip(context, 1000), "source": "agent"},
            revenue=revenue,
        )
    return f"Recorded '{kind}'."


TOOLS: tuple[BaseTool, ...] = (
    confirm_appointment,
    reschedule_appointment,
    cancel_appointment,
    handoff_to_human,
    tag_contact,
    log_event,
)


async def _record(
    ctx: TurnContext,
    session: AsyncSession,
    type: str,
    data: dict[str, object],
    revenue: float | None = None,
) -> None:
    await in_session(
        session,
        lambda d: events.event_plan(
            d,
            workspace_id=ctx.workspace_id,
            conversation_id=ctx.conversation_id,
            agent_run_id=ctx.run_id,
            type=type,
            data=dict(data),
            revenue=revenue,
        ),
    )


def _clip(text: object, limit: int) -> str:
    return " ".join(str(text).split())[:limit]
