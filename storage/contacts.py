"""Contacts: one row per phone number per workspace, with tags and consent."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Contact, Tag
from storage.raw import Dialect, Plan
from storage.types import new_id, upsert_insert, utcnow

# The columns a caller may set from outside; anything else is ours.
CONTACT_FIELDS = ("first_name", "last_name", "email", "external_id", "date_of_birth", "timezone")


async def upsert_contact_by_phone(
    *,
    session: AsyncSession,
    workspace_id: str,
    phone: str,
    fields: dict[str, Any] | None = None,
    custom_fields: dict[str, Any] | None = None,
) -> Contact:
    """The contact for `phone`, created if new, row-locked, with the given fields applied.

    Fields that are None are left as they were: a kickoff that knows less than the last one
    does not erase what the last one taught us.
    """
    contact_id = await contact_id_for_phone(session=session, workspace_id=workspace_id, phone=phone)
    contact = await session.get(Contact, contact_id, with_for_update=True, populate_existing=True)
    assert contact is not None
    changed = False
    for name, value in (fields or {}).items():
        if name not in CONTACT_FIELDS:
            raise ValueError(f"unknown contact field {name!r}")
        if value is not None and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed = True
    if custom_fields:
        contact.custom_fields = {**contact.custom_fields, **custom_fields}
        changed = True
    if changed:
        contact.updated_at = utcnow()
        await session.flush()
    return contact


async def contact_id_for_phone(*, session: AsyncSession, workspace_id: str, phone: str) -> str:
    """The id of the contact with `phone`, created if new: one statement, no row objects.

    The inbound hot path needs only the id; the no-op update makes RETURNING answer for an
    existing row too, and takes its row lock, so concurrent texts from one number queue here.
    """
    now = utcnow()
    stmt = upsert_insert(session, Contact).values(
        id=new_id("ct"),
        workspace_id=workspace_id,
        phone=phone,
        custom_fields={},
        tags=[],
        opted_out=False,
        blocked=False,
        created_at=now,
        updated_at=now,
    )
    result = await session.exec(
        stmt.on_conflict_do_update(
            index_elements=["workspace_id", "phone"], set_={"phone": stmt.excluded.phone}
        ).returning(col(Contact.id))
    )
    contact_id: str = result.scalar_one()
    return contact_id


async def get_contact(*, session: AsyncSession, contact_id: str) -> Contact | None:
    return await session.get(Contact, contact_id)


def opt_out_plan(dialect: Dialect, contact_id: str, *, opted_out: bool, source: str) -> Plan[None]:
    """Opt the contact out (or back in), saying how."""
    stamp = dialect.ts(utcnow())
    found = yield (
        "UPDATE contacts SET opted_out = ?, opted_out_at = ?, opt_out_source = ?, updated_at = ? "
        "WHERE id = ? RETURNING id",
        (
            dialect.flag(opted_out),
            stamp if opted_out else None,
            source if opted_out else None,
            stamp,
            contact_id,
        ),
    )
    if not found:
        raise LookupError(contact_id)


async def add_tag(*, session: AsyncSession, contact_id: str, tag: str) -> bool:
    """Tag the contact; False when it already had the tag."""
    contact = await session.get(Contact, contact_id, with_for_update=True)
    if contact is None:
        raise LookupError(contact_id)
    if tag in contact.tags:
        return False
    contact.tags = [*contact.tags, tag]
    contact.updated_at = utcnow()
    # The workspace's list of tags (the inbox API's) knows every tag a contact carries.
    await session.exec(
        upsert_insert(session, Tag)
        .values(workspace_id=contact.workspace_id, name=tag, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
    )
    await session.flush()
    return True


async def remove_tag(*, session: AsyncSession, contact_id: str, tag: str) -> bool:
    """Untag the contact; False when it did not have the tag. The workspace keeps the tag in its
    list: others may carry it, and it is there to be used again."""
    contact = await session.get(Contact, contact_id, with_for_update=True)
    if contact is None:
        raise LookupError(contact_id)
    if tag not in contact.tags:
        return False
    contact.tags = [t for t in contact.tags if t != tag]
    contact.updated_at = utcnow()
    await session.flush()
    return True


def parse_birth_date(value: str | date | None) -> date | None:
    """Dates of birth arrive as dates or ISO timestamps ("1988-03-22T00:00:00.000Z")."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])
