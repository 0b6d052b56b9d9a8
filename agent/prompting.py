"""Render the system prompt and the fixed replies from the texts in `prompts/`.

Everything the business told us (contact, appointment, kickoff context) goes into the system
prompt as data. The customer's own words never do: they reach the model only as user messages.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from string import Template
from zoneinfo import ZoneInfo

from agent.booking import DEFAULT_HOURS, Hours, format_when
from agent.templates import render_lenient
from storage.conversations import EarlierThread
from storage.models import Appointment, Contact, Scheduling, Workspace


@cache
def _text(name: str) -> str:
    return resources.files("prompts").joinpath(name).read_text(encoding="utf-8")


@cache
def _replies() -> dict[str, str]:
    return {k: str(v) for k, v in tomllib.loads(_text("replies.toml")).items()}


def describe_appointment(appointment: Appointment | None, zone: str) -> str:
    if appointment is None:
        return "none on file"
    parts = []
    if appointment.type:
        parts.append(f"type: {appointment.type}")
    if appointment.starts_at:
        when = format_when(appointment.starts_at, zone)
        if appointment.ends_at:
            when += f" to {format_when(appointment.ends_at, zone).split(' at ')[-1]}"
        parts.append(f"when: {when}")
    if appointment.description:
        parts.append(f"details: {appointment.description}")
    parts.append(f"status: {appointment.status}")
    if appointment.requested_start:
        asked = format_when(appointment.requested_start, zone)
        parts.append(f"customer asked to move it to {asked}")
    return "\n".join(f"- {p}" for p in parts)


def describe_contact(contact: Contact) -> str:
    name = " ".join(n for n in (contact.first_name, contact.last_name) if n)
    parts = [f"name: {name or 'unknown'}"]
    if contact.tags:
        parts.append(f"tags: {', '.join(contact.tags)}")
    for key, value in sorted(contact.custom_fields.items()):
        parts.append(f"{key}: {value}")
    return "\n".join(f"- {p}" for p in parts)


def contact_zone(contact: Contact, workspace: Workspace) -> str:
    return contact.timezone or workspace.timezone


def rendered_prompt(
    *,
    workspace: Workspace,
    contact: Contact,
    appointment: Appointment | None,
    context: str | None,
    now: datetime,
    others: Sequence[Appointment] = (),
    earlier: Sequence[EarlierThread] = (),
) -> tuple[str, str]:
    """The system prompt, and the facts in it (everything but the vertical's fixed wording,
    whose examples are not facts): what a reply may state without a tool."""
    zone = contact_zone(contact, workspace)
    template = Template(_text(f"{workspace.vertical}.md"))
    values = dict(
        business_name=workspace.business_name,
        timezone=zone,
        now=f"{format_when(now, zone)} ({zone})",
        hours=_hours_line(workspace, now),
        services=describe_services(workspace),
        rescheduling=_RESCHEDULING[Scheduling(workspace.scheduling)],
        contact=describe_contact(contact),
        appointment=describe_appointment(appointment, zone),
        other_appointments=_describe_others(appointment, others, zone),
        earlier=describe_earlier(earlier, zone),
        context=(context or "nothing").strip(),
    )
    facts = "\n".join(v for k, v in values.items() if k != "rescheduling")
    return template.safe_substitute(values), facts


def describe_services(workspace: Workspace) -> str:
    """'cleaning (60 min), checkup (30 min)': the kinds of visit the book knows."""
    types = workspace.appointment_types
    if not types:
        return "not listed (visits take 30 minutes)"
    return ", ".join(f"{name} ({minutes} min)" for name, minutes in sorted(types.items()))


_RESCHEDULING = {
    Scheduling.BUILTIN: (
        "- check_availability to find open times when they want a new time, then\n"
        "  reschedule_appointment with the time they pick (book_appointment when they have no\n"
        "  appointment). Say it is moved or booked only after the tool says so; if it refuses,\n"
        "  offer the open times it gives."
    ),
    Scheduling.EXTERNAL: (
        "- reschedule_appointment when they ask for a new time and give one; the office keeps\n"
        "  its own calendar, so say the office will confirm it."
    ),
}


_SAID = {
    "appointment.confirmed": "confirmed the appointment",
    "appointment.rescheduled": "moved the appointment",
    "appointment.reschedule_requested": "asked to move the appointment",
    "appointment.canceled": "canceled the appointment",
    "appointment.booked": "booked an appointment",
    "conversation.emergency": "reported an emergency",
    "contact.opted_out": "opted out of texts",
    "contact.opted_in": "opted back in",
}


def describe_earlier(earlier: Sequence[EarlierThread], zone: str) -> str:
    """What came of the contact's earlier threads, a line each, from what was recorded."""
    if not earlier:
        return "none"
    lines = []
    for thread in earlier:
        done: list[str] = []
        for kind, data in thread.events:
            if kind == "conversation.handoff":
                done.append(f"handed to a person ({str(data.get('reason', ''))[:80]})")
            elif kind == "contact.tagged":
                done.append(f"tagged {str(data.get('tag', ''))[:40]}")
            elif kind in _SAID:
                done.append(_SAID[kind])
        day = thread.started_at.astimezone(ZoneInfo(zone))
        lines.append(f"- {day:%a, %b} {day.day}: " + ("; ".join(done) or "talked, nothing changed"))
    return "\n".join(lines)


def _describe_others(
    appointment: Appointment | None, others: Sequence[Appointment], zone: str
) -> str:
    if not others:
        return "none"
    lines = []
    for other in others:
        what = other.type or "appointment"
        when = format_when(other.starts_at, zone) if other.starts_at else "time not set"
        lines.append(f"- {other.id}: {what}, {when} ({other.status})")
    if appointment is not None:
        lines.append(
            f"(This conversation is about {appointment.id}. When it is unclear which one the "
            "customer means, ask; pass appointment_id to act on another.)"
        )
    return "\n".join(lines)


def _hours_line(workspace: Workspace, now: datetime) -> str:
    hours = opening_hours(workspace)
    today = now.astimezone(ZoneInfo(workspace.timezone)).date()
    soon = sorted(d for d in hours.closed if today <= d <= today + timedelta(days=60))
    closed = f"; also closed {', '.join(f'{d:%a, %b} {d.day}' for d in soon)}" if soon else ""
    return f"{hours.describe()}{closed} ({workspace.timezone})"


def opening_hours(workspace: Workspace) -> Hours:
    hours = workspace.hours if workspace.hours is not None else DEFAULT_HOURS
    return _parsed_hours(tuple(sorted(hours.items())), tuple(workspace.closed_days))


@lru_cache(maxsize=256)
def _parsed_hours(weekly: tuple[tuple[str, str], ...], closed: tuple[str, ...]) -> Hours:
    # Every turn renders the hours; a workspace's rarely change.
    return Hours.parse(dict(weekly), closed)


def reply_text(
    name: str,
    *,
    workspace: Workspace,
    contact: Contact | None = None,
    appointment: Appointment | None = None,
    language: str = "en",
) -> str:
    """A fixed reply, in the customer's language when there is a version in it."""
    first = contact.first_name if contact else None
    zone = contact_zone(contact, workspace) if contact else workspace.timezone
    what = "appointment"
    if appointment is not None:
        what = f"{appointment.type} appointment" if appointment.type else "appointment"
        if appointment.starts_at:
            what += f" on {format_when(appointment.starts_at, zone)}"
    replies = _replies()
    text = replies.get(f"{name}_{language}", replies[name])
    return Template(text).safe_substitute(
        business_name=workspace.business_name,
        first_name_comma=f", {first}" if first else "",
        appointment=what,
    )


def greeting_text(*, business_name: str, variables: Mapping[str, object]) -> str:
    """The agent's first text when a conversation is started without one (`greeting.txt`,
    filled from the caller's parameters; a parameter not given is left out)."""
    return render_lenient(_text("greeting.txt"), {**variables, "business_name": business_name})
