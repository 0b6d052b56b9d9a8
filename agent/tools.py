"""The agent's tools: small async functions whose docstrings are what the model reads.

Each acts only on the conversation in the runtime context, validates its input in code, records
an Event for what it changes, and answers with a short sentence the model can act on. A bad call
changes nothing and says why, so the model can recover. Times are booked through the built-in
appointment book (`agent.booking`) unless the workspace keeps its calendar elsewhere.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from langchain.tools import ToolRuntime, tool
from langchain_core.tools import BaseTool
from sqlmodel.ext.asyncio.session import AsyncSession

from agent import hooks
from agent.booking import DEFAULT_MINUTES, Book, format_when, type_minutes
from agent.context import TurnContext
from agent.prompting import opening_hours
from storage import appointments, contacts, conversations, events
from storage.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    Conversation,
    Scheduling,
    Workspace,
)
from storage.raw import in_session
from storage.types import utcnow
from storage.workspaces import get_workspace

_TAG = re.compile(r"^[a-z0-9][a-z0-9 _:-]{0,39}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,59}$")
_CLOSED = (AppointmentStatus.CANCELED,)

Runtime = ToolRuntime[TurnContext]


@tool
async def confirm_appointment(runtime: Runtime, appointment_id: str | None = None) -> str:
    """Confirm this customer's appointment. Call it when they clearly say they will come.

    appointment_id: which of the customer's appointments, when they have more than one (the
    ids are in your instructions); leave it out for the one this conversation is about.
    """
    ctx = runtime.context
    target = appointment_id or ctx.appointment_id
    if target is None:
        return "There is no appointment on file for this customer; nothing was confirmed."
    async with ctx.sessions() as session, session.begin():
        appointment = await _theirs(session, ctx, target)
        if appointment is None:
            return _NOT_THEIRS
        if appointment.status in _CLOSED:
            return "That appointment was canceled; it cannot be confirmed. Offer to hand off."
        if appointment.status == AppointmentStatus.CONFIRMED:
            return "The appointment was already confirmed. Nothing changed."
        await in_session(
            session,
            lambda d: appointments.status_plan(d, target, AppointmentStatus.CONFIRMED),
        )
        await _record(ctx, session, "appointment.confirmed", {"appointment_id": appointment.id})
        await _tell(
            ctx,
            session,
            hooks.APPOINTMENT_CONFIRMED,
            hooks.appointment_data(
                appointment,
                status=AppointmentStatus.CONFIRMED,
                conversation_id=ctx.conversation_id,
                source="agent",
            ),
        )
    return "Confirmed. Tell the customer their appointment is confirmed."


@tool
async def check_availability(
    day: str,
    runtime: Runtime,
    until: str | None = None,
    after: str | None = None,
    before: str | None = None,
    kind: str | None = None,
) -> str:
    """Find open times to offer the customer, before moving or booking an appointment.

    day: the first day to look at, an ISO date like 2025-03-12.
    until: the last day to look at (ISO date) for a range such as "next week"; default: day.
    after, before: the earliest and latest start time, 24-hour "HH:MM" like "15:00"; optional.
    kind: for a new appointment, what the visit is for (e.g. "cleaning"), so the times are
    long enough; leave it out to move the customer's appointment.
    """
    ctx = runtime.context
    try:
        first = date.fromisoformat(str(day).strip())
        last = date.fromisoformat(str(until).strip()) if until else first
        earliest = _clock(after)
        latest = _clock(before)
    except ValueError:
        return (
            "Give day (and until) as ISO dates like 2025-03-12, and after/before as 24-hour "
            "times like 15:00. Nothing was looked up."
        )
    if last < first:
        return "until is before day. Nothing was looked up."
    async with ctx.sessions() as session:
        workspace = await get_workspace(session=session, workspace_id=ctx.workspace_id)
        if workspace is None:
            return "The office's calendar is not available. Offer to hand off."
        if workspace.scheduling == Scheduling.EXTERNAL:
            return (
                "This office keeps its own calendar. Ask which day and time suit the customer "
                "and pass it to reschedule_appointment; the office will confirm."
            )
        minutes = type_minutes(workspace.appointment_types, kind) or await _visit_minutes(
            session, ctx, workspace
        )
        zone = ZoneInfo(workspace.timezone)
        window_start = datetime.combine(first, time(), tzinfo=zone)
        window_end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
        book = await _book(session, workspace, ctx, window_start, window_end)
    slots = book.open_slots(
        first, last, minutes=minutes, now=utcnow(), after=earliest, before=latest
    )
    if not slots:
        span = first.isoformat() if last == first else f"{first} to {last}"
        shut = sorted(d for d in book.hours.closed if first <= d <= last)
        holidays = (
            " The office is closed on " + ", ".join(f"{d:%A, %B} {d.day}" for d in shut) + "."
            if shut
            else ""
        )
        return (
            f"No open times for a {minutes}-minute visit on {span}.{holidays} Office hours: "
            f"{book.hours.describe()}. Suggest another day."
        )
    offered = "; ".join(format_when(slot, ctx.timezone) for slot in slots)
    return f"Open times: {offered}. Offer a few of these; book one only when the customer picks it."


@tool
async def reschedule_appointment(
    new_start: str, runtime: Runtime, appointment_id: str | None = None
) -> str:
    """Move this customer's appointment to a new start time the customer chose.

    new_start: the new date and time in ISO-8601, e.g. 2025-03-12T15:00 (customer's local time
    unless an offset is given). Use check_availability first to find open times.
    appointment_id: which of the customer's appointments, when they have more than one (the
    ids are in your instructions); leave it out for the one this conversation is about.
    """
    ctx = runtime.context
    target = appointment_id or ctx.appointment_id
    if target is None:
        return "There is no appointment on file to move. Offer to hand off to a person."
    requested = _moment(new_start, ctx.timezone)
    if isinstance(requested, str):
        return requested
    now = utcnow()
    if requested < now:
        return "That time is in the past. Ask the customer for a future day and time."
    if requested > now + timedelta(days=366):
        return "That time is more than a year away. Ask the customer to pick a nearer date."
    when = format_when(requested, ctx.timezone)
    async with ctx.sessions() as session, session.begin():
        workspace = await get_workspace(session=session, workspace_id=ctx.workspace_id)
        appointment = await _theirs(session, ctx, target)
        if appointment is None:
            return _NOT_THEIRS
        if workspace is None or appointment.status in _CLOSED:
            return "That appointment was canceled; it cannot be moved. Offer to hand off."
        if workspace.scheduling == Scheduling.EXTERNAL:
            await in_session(
                session,
                lambda d: appointments.status_plan(
                    d, target, AppointmentStatus.RESCHEDULE_REQUESTED, requested
                ),
            )
            await _record(
                ctx,
                session,
                "appointment.reschedule_requested",
                {"appointment_id": appointment.id, "requested_start": requested.isoformat()},
            )
            contact = await session.get(Contact, ctx.contact_id)
            asked = _move_request(ctx, appointment, contact, requested)
            await in_session(
                session,
                lambda d: hooks.hook_plan(d, workspace, "appointment.reschedule_requested", asked),
            )
            return (
                f"Asked the office to move it to {when}. Tell the customer the office will confirm."
            )
        minutes = _minutes_of(appointment, workspace)
        day_start = datetime.combine(
            requested.astimezone(ZoneInfo(workspace.timezone)).date(),
            time(),
            tzinfo=ZoneInfo(workspace.timezone),
        )
        book = await _book(
            session, workspace, ctx, day_start, day_start + timedelta(days=8), appointment.id
        )
        refusal = book.refusal(requested, minutes, now=now)
        if refusal is not None:
            offer = _alternatives(book, requested, minutes, now, ctx.timezone)
            return f"{refusal.detail} Nothing was changed. {offer}"
        previous = {
            "starts_at": appointment.starts_at.isoformat() if appointment.starts_at else None,
            "ends_at": appointment.ends_at.isoformat() if appointment.ends_at else None,
            "moved_at": now.isoformat(),
        }
        appointment.history = [*appointment.history, previous]
        appointment.starts_at = requested.astimezone(UTC)
        appointment.ends_at = appointment.starts_at + timedelta(minutes=minutes)
        appointment.status = AppointmentStatus.RESCHEDULED
        appointment.requested_start = None
        appointment.updated_at = now
        await session.flush()
        await _record(
            ctx,
            session,
            "appointment.rescheduled",
            {
                "appointment_id": appointment.id,
                "from": previous["starts_at"],
                "to": appointment.starts_at.isoformat(),
            },
        )
    return f"Moved. Tell the customer their appointment is now {when}."


@tool
async def book_appointment(start: str, runtime: Runtime, kind: str | None = None) -> str:
    """Book a new appointment for this customer, when they have none and pick a time.

    start: the date and time in ISO-8601, e.g. 2025-03-12T15:00 (customer's local time unless
    an offset is given). Use check_availability first to find open times.
    kind: what the visit is for, in a few words (e.g. "cleaning", "water heater repair").
    """
    ctx = runtime.context
    requested = _moment(start, ctx.timezone)
    if isinstance(requested, str):
        return requested
    now = utcnow()
    async with ctx.sessions() as session, session.begin():
        workspace = await get_workspace(session=session, workspace_id=ctx.workspace_id)
        if workspace is None or workspace.scheduling == Scheduling.EXTERNAL:
            return (
                "This office keeps its own calendar: nothing was booked. Hand off so the office "
                "can book the time the customer wants."
            )
        # The thread's appointment as stored now: one booked earlier in this turn counts.
        thread = await session.get(Conversation, ctx.conversation_id)
        if thread is not None and thread.appointment_id is not None:
            current = await appointments.get_appointment(
                session=session, appointment_id=thread.appointment_id
            )
            if current is not None and current.status not in _CLOSED:
                return (
                    "This customer already has an appointment; nothing was booked. Use "
                    "reschedule_appointment to move it."
                )
        zone = ZoneInfo(workspace.timezone)
        day = requested.astimezone(zone).date()
        day_start = datetime.combine(day, time(), tzinfo=zone)
        book = await _book(session, workspace, ctx, day_start, day_start + timedelta(days=8))
        minutes = type_minutes(workspace.appointment_types, kind) or DEFAULT_MINUTES
        refusal = book.refusal(requested, minutes, now=now)
        if refusal is not None:
            offer = _alternatives(book, requested, minutes, now, ctx.timezone)
            return f"{refusal.detail} Nothing was booked. {offer}"
        appointment = await appointments.upsert_appointment(
            session=session,
            workspace_id=ctx.workspace_id,
            contact_id=ctx.contact_id,
            external_id=None,
            fields={
                "starts_at": requested.astimezone(UTC),
                "ends_at": requested.astimezone(UTC) + timedelta(minutes=minutes),
                "type": _clip(kind, 100) or None,
                "status": AppointmentStatus.SCHEDULED,
            },
        )
        await in_session(
            session,
            lambda d: conversations.attach_appointment_plan(d, ctx.conversation_id, appointment.id),
        )
        await _record(
            ctx,
            session,
            "appointment.booked",
            {"appointment_id": appointment.id, "starts_at": requested.isoformat()},
        )
    when = format_when(requested, ctx.timezone)
    return f"Booked. Tell the customer their appointment is on {when}."


@tool
async def cancel_appointment(
    reason: str, runtime: Runtime, appointment_id: str | None = None
) -> str:
    """Cancel this customer's appointment. Only when they clearly ask to cancel.

    reason: a few words on why, in the customer's terms.
    appointment_id: which of the customer's appointments, when they have more than one (the
    ids are in your instructions); leave it out for the one this conversation is about.
    """
    ctx = runtime.context
    target = appointment_id or ctx.appointment_id
    if target is None:
        return "There is no appointment on file to cancel."
    async with ctx.sessions() as session, session.begin():
        appointment = await _theirs(session, ctx, target)
        if appointment is None:
            return _NOT_THEIRS
        if appointment.status == AppointmentStatus.CANCELED:
            return "The appointment was already canceled. Nothing changed."
        await in_session(
            session,
            lambda d: appointments.status_plan(d, target, AppointmentStatus.CANCELED),
        )
        await _record(
            ctx,
            session,
            "appointment.canceled",
            {"appointment_id": appointment.id, "reason": _clip(reason, 300)},
        )
        await _tell(
            ctx,
            session,
            hooks.APPOINTMENT_CANCELED,
            hooks.appointment_data(
                appointment,
                status=AppointmentStatus.CANCELED,
                conversation_id=ctx.conversation_id,
                source="agent",
                reason=_clip(reason, 300),
            ),
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
        await _tell(
            ctx,
            session,
            hooks.CONVERSATION_HANDOFF,
            {
                "conversation_id": ctx.conversation_id,
                "contact_id": ctx.contact_id,
                "reason": reason,
            },
        )
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
    check_availability,
    reschedule_appointment,
    book_appointment,
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


async def _tell(ctx: TurnContext, session: AsyncSession, type: str, data: dict[str, Any]) -> None:
    """Queue a webhook to the business with the change, when it has one."""
    await in_session(session, lambda d: hooks.workspace_hook_plan(d, ctx.workspace_id, type, data))


async def _book(
    session: AsyncSession,
    workspace: Workspace,
    ctx: TurnContext,
    start: datetime,
    end: datetime,
    exclude_id: str | None = None,
) -> Book:
    taken = await appointments.taken_times(
        session=session,
        workspace_id=ctx.workspace_id,
        start=start,
        end=end,
        exclude_id=exclude_id if exclude_id is not None else ctx.appointment_id,
        default_minutes=DEFAULT_MINUTES,
    )
    return Book(opening_hours(workspace), workspace.timezone, taken)


_NOT_THEIRS = "That is not one of this customer's appointments. Nothing changed."


def _move_request(
    ctx: TurnContext, appointment: Appointment, contact: Contact | None, requested: datetime
) -> dict[str, object]:
    """What the business needs to move a visit in its own calendar and tell the customer."""
    start = appointment.starts_at
    return {
        "appointment": {
            "id": appointment.id,
            "external_id": appointment.external_id,
            "type": appointment.type,
            "starts_at": start.isoformat() if start else None,
            "requested_start": requested.isoformat(),
        },
        "contact": {
            "id": ctx.contact_id,
            "external_id": contact.external_id if contact else None,
            "first_name": contact.first_name if contact else None,
            "last_name": contact.last_name if contact else None,
            "phone": contact.phone if contact else None,
        },
        "conversation_id": ctx.conversation_id,
        "timezone": ctx.timezone,
    }


async def _theirs(
    session: AsyncSession, ctx: TurnContext, appointment_id: str
) -> Appointment | None:
    """The appointment, if it is this customer's (in this workspace); None otherwise."""
    appointment = await appointments.get_appointment(
        session=session, appointment_id=str(appointment_id).strip()
    )
    if appointment is None or appointment.contact_id != ctx.contact_id:
        return None
    return appointment if appointment.workspace_id == ctx.workspace_id else None


def _moment(text: str, zone: str) -> datetime | str:
    """An ISO-8601 time the model passed (the customer's local time without an offset), or
    what to tell it when it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return (
            f"'{text}' is not an ISO-8601 date and time like 2025-03-12T15:00. "
            "Ask the customer for a specific day and time."
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(zone))


def _alternatives(book: Book, wanted: datetime, minutes: int, now: datetime, zone: str) -> str:
    nearby = _nearby(book, wanted, minutes, now)
    if not nearby:
        return f"Office hours: {book.hours.describe()}."
    return "Open times nearby: " + "; ".join(format_when(s, zone) for s in nearby)


def _nearby(book: Book, wanted: datetime, minutes: int, now: datetime) -> list[datetime]:
    """Up to three open times near one that could not be had: later that day first, then the
    following days, then earlier that day."""
    local = wanted.astimezone(book.zone)
    day = local.date()
    later = book.open_slots(day, day, minutes=minutes, now=now, after=local.time(), limit=2)
    following = book.open_slots(
        day + timedelta(days=1), day + timedelta(days=6), minutes=minutes, now=now, per_day=1
    )
    earlier = book.open_slots(day, day, minutes=minutes, now=now, before=local.time())
    return sorted([*later, *following, *reversed(earlier)][:3])


async def _visit_minutes(session: AsyncSession, ctx: TurnContext, workspace: Workspace) -> int:
    if ctx.appointment_id is None:
        return DEFAULT_MINUTES
    appointment = await appointments.get_appointment(
        session=session, appointment_id=ctx.appointment_id
    )
    return _minutes_of(appointment, workspace) if appointment is not None else DEFAULT_MINUTES


def _minutes_of(appointment: Appointment, workspace: Workspace) -> int:
    """How long the visit is: as booked, else as long as its kind takes, else the default."""
    if (
        appointment.starts_at
        and appointment.ends_at
        and appointment.ends_at > appointment.starts_at
    ):
        return max(
            5, min(8 * 60, int((appointment.ends_at - appointment.starts_at).total_seconds() // 60))
        )
    return type_minutes(workspace.appointment_types, appointment.type) or DEFAULT_MINUTES


def _clock(text: str | None) -> time | None:
    """'15:00' as a time of day; None for nothing. Raises ValueError otherwise."""
    if text is None or not str(text).strip():
        return None
    return time.fromisoformat(str(text).strip())


def _clip(text: object, limit: int) -> str:
    return " ".join(str(text).split())[:limit]
