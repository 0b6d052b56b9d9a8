"""Appointments: the thing most of these conversations are about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Appointment, AppointmentStatus
from storage.raw import Dialect, Plan
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
