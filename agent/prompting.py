"""Render the system prompt and the fixed replies from the texts in `prompts/`.

Everything the business told us (contact, appointment, kickoff context) goes into the system
prompt as data. The customer's own words never do: they reach the model only as user messages.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from functools import cache
from importlib import resources
from string import Template
from zoneinfo import ZoneInfo

from storage.models import Appointment, Contact, Workspace


@cache
def _text(name: str) -> str:
    return resources.files("prompts").joinpath(name).read_text(encoding="utf-8")


@cache
def _replies() -> dict[str, str]:
    return {k: str(v) for k, v in tomllib.loads(_text("replies.toml")).items()}


def format_when(moment: datetime, zone: str) -> str:
    """'Tue, Mar 10 at 3:00 PM' in the given zone."""
    local = moment.astimezone(ZoneInfo(zone))
    hour = local.hour % 12 or 12
    return f"{local:%a, %b} {local.day} at {hour}:{local:%M %p}"


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


def system_prompt(
    *,
    workspace: Workspace,
    contact: Contact,
    appointment: Appointment | None,
    context: str | None,
    now: datetime,
) -> str:
    zone = contact_zone(contact, workspace)
    template = Template(_text(f"{workspace.vertical}.md"))
    return template.safe_substitute(
        business_name=workspace.business_name,
        timezone=zone,
        now=f"{format_when(now, zone)} ({zone})",
        contact=describe_contact(contact),
        appointment=describe_appointment(appointment, zone),
        context=(context or "nothing").strip(),
    )


def reply_text(
    name: str,
    *,
    workspace: Workspace,
    contact: Contact | None = None,
    appointment: Appointment | None = None,
) -> str:
    first = contact.first_name if contact else None
    zone = contact_zone(contact, workspace) if contact else workspace.timezone
    what = "appointment"
    if appointment is not None:
        what = f"{appointment.type} appointment" if appointment.type else "appointment"
        if appointment.starts_at:
            what += f" on {format_when(appointment.starts_at, zone)}"
    return Template(_replies()[name]).safe_substitute(
        business_name=workspace.business_name,
        first_name_comma=f", {first}" if first else "",
        appointment=what,
    )
