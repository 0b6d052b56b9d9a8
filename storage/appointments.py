"""Appointments: the thing most of these conversations are about."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Appointment, AppointmentStatus, Workspace
from storage.raw import Columns, Dialect, Plan
from storage.types import new_id, utcnow

APPOINTMENT_FIELDS = ("starts_at", "ends_at", "timezone", "type", "description", "status")


async def upsert_appointment(
    *,
    session: AsyncSession,
    workspace_id: str,
    contact_id: str,
    external_id: str | None,
    fields: dict[str, Any],
) -> Appointment:
    """The appointment with `external_id` updated (or a new one); without an id, always new."""
    unknown = set(fields) - set(APPOINTMENT_FIELDS)
    if unknown:
        raise ValueError(f"unknown appointment fields {sorted(unknown)}")
    appointment: Appointment | None = None
    if external_id is not None:
        result = await session.exec(
            select(Appointment)
            .where(Appointment.workspace_id == workspace_id, Appointment.external_id == external_id)
            .with_for_update()
        )
        appointment = result.first()
    if appointment is None:
        appointment = Appointment(
            id=new_id("apt"),
            workspace_id=workspace_id,
            contact_id=contact_id,
            external_id=external_id,
        )
        session.add(appointment)
    appointment.contact_id = contact_id
    for name, value in fields.items():
        if value is not None:
            setattr(appointment, name, value)
    appointment.updated_at = utcnow()
    await session.flush()
    return appointment


async def get_appointment(*, session: AsyncSession, appointment_id: str) -> Appointment | None:
    return await session.get(Appointment, appointment_id)


def status_plan(
    dialect: Dialect,
    appointment_id: str,
    status: AppointmentStatus,
    requested_start: datetime | None = None,
) -> Plan[None]:
    """Set the appointment's status (and the start the customer asked for, when moving it)."""
    found = yield (
        "UPDATE appointments SET status = ?, "
        "requested_start = COALESCE(?, requested_start), updated_at = ? WHERE id = ? RETURNING id",
        (str(status), dialect.ts(requested_start), dialect.ts(utcnow()), appointment_id),
    )
    if not found:
        raise LookupError(appointment_id)


async def taken_times(
    *,
    session: AsyncSession,
    workspace_id: str,
    start: datetime,
    end: datetime,
    exclude_id: str | None = None,
    default_minutes: int = 30,
) -> list[tuple[datetime, datetime]]:
    """(start, end) of the workspace's live appointments that could overlap [start, end).

    On PostgreSQL the workspace row is locked until commit first, so two turns booking the same
    time one after the other see each other's booking (SQLite has one writer anyway)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(
            select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
        )
    statement = select(Appointment).where(
        Appointment.workspace_id == workspace_id,
        Appointment.status != AppointmentStatus.CANCELED,
        col(Appointment.starts_at).is_not(None),
        col(Appointment.starts_at) < end,
        col(Appointment.starts_at) > start - timedelta(days=1),
    )
    if exclude_id is not None:
        statement = statement.where(Appointment.id != exclude_id)
    taken: list[tuple[datetime, datetime]] = []
    for appointment in await session.exec(statement):
        assert appointment.starts_at is not None
        ends = appointment.ends_at or appointment.starts_at + timedelta(minutes=default_minutes)
        if ends > start:
            taken.append((appointment.starts_at, ends))
    return taken


_UPCOMING = Columns(Appointment, "a")


def upcoming_plan(
    dialect: Dialect, contact_id: str, *, after: datetime, limit: int = 5
) -> Plan[list[Appointment]]:
    """The contact's live appointments starting after `after`, soonest first."""
    found = yield (
        f"SELECT {_UPCOMING.sql} FROM appointments a WHERE a.contact_id = ? "
        "AND a.status != 'canceled' AND a.starts_at > ? ORDER BY a.starts_at LIMIT ?",
        (contact_id, dialect.ts(after), limit),
    )
    return [_UPCOMING.load(row) for row in found]
