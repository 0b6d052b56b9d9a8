"""Drip campaigns and the contacts going through them.

The hand-written SQL formats in only column lists, placeholders (`?`) and constants.

A campaign's keyword is matched whatever its case: keys are kept as written ("SMILE", "one"),
two keys of a workspace never differ by case alone, and look-ups compare `lower(key)` within
the workspace (the unique index on (workspace_id, key) narrows them to its few campaigns).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Campaign, CampaignEnrollment, MessageStatus
from storage.raw import Columns, Dialect, Plan, marks, parse_ts
from storage.types import new_id, utcnow


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"
    CANCELED = "canceled"


# Ids in one `IN (...)`, well under SQLite's and asyncpg's limits on parameters.
_CHUNK = 500

_CAMPAIGN = Columns(Campaign, "c")
_ENROLLMENT = Columns(CampaignEnrollment, "e")


async def list_campaigns(
    *,
    session: AsyncSession,
    workspace_id: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[Campaign]:
    """The workspace's campaigns (every workspace's without one), by key in any case."""
    query = select(Campaign)
    if workspace_id is not None:
        query = query.where(Campaign.workspace_id == workspace_id)
    query = query.order_by(
        col(Campaign.workspace_id), func.lower(col(Campaign.key)), col(Campaign.id)
    )
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.exec(query)).all())


async def find_campaigns(
    *, session: AsyncSession, workspace_id: str, ids: Sequence[str] = (), keys: Sequence[str] = ()
) -> list[Campaign]:
    """The workspace's campaigns with one of these ids, or one of these keys (any case)."""
    if not ids and not keys:
        return []
    conditions = []
    if ids:
        conditions.append(col(Campaign.id).in_(list(ids)))
    if keys:
        conditions.append(func.lower(col(Campaign.key)).in_([k.lower() for k in keys]))
    found = await session.exec(
        select(Campaign)
        .where(Campaign.workspace_id == workspace_id, or_(*conditions))
        .order_by(col(Campaign.key), col(Campaign.id))
    )
    return list(found.all())


async def save_campaign(
    *,
    session: AsyncSession,
    workspace_id: str,
    key: str,
    name: str | None,
    steps: list[dict[str, Any]],
) -> tuple[Campaign, bool]:
    """Create the campaign, or replace the one with this key (any case) keeping its id;
    whether it was created."""
    found = await find_campaigns(session=session, workspace_id=workspace_id, keys=[key])
    existing = found[0] if found else None
    now = utcnow()
    if existing is None:
        campaign = Campaign(
            id=new_id("cmp"),
            workspace_id=workspace_id,
            key=key,
            name=name,
            steps=steps,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
    else:
        campaign = existing
        campaign.key, campaign.name, campaign.steps = key, name, steps
        campaign.updated_at = now
    await session.flush()
    return campaign, existing is None


def by_keyword_plan(workspace_id: str, word: str) -> Plan[Campaign | None]:
    """The workspace's campaign whose keyword is `word` (any case), by one query."""
    found = yield (
        f"SELECT {_CAMPAIGN.sql} FROM campaigns c "  # noqa: S608
        "WHERE c.workspace_id = ? AND lower(c.key) = ?",
        (workspace_id, word.lower()),
    )
    return _CAMPAIGN.load(found[0]) if found else None


def active_enrollments_plan(
    campaign_ids: Sequence[str], contact_ids: Sequence[str] | None = None
) -> Plan[list[CampaignEnrollment]]:
    """The running enrollments in these campaigns (only these contacts', when given)."""
    if not campaign_ids or (contact_ids is not None and not contact_ids):
        return []
    sql = (
        f"SELECT {_ENROLLMENT.sql} FROM campaign_enrollments e "  # noqa: S608
        f"WHERE e.status = 'active' AND e.campaign_id IN ({marks(len(campaign_ids))})"
    )
    params: list[Any] = list(campaign_ids)
    if contact_ids is not None:
        sql += f" AND e.contact_id IN ({marks(len(contact_ids))})"
        params += list(contact_ids)
    found = yield (sql + " ORDER BY e.started_at, e.id", params)
    return [_ENROLLMENT.load(row) for row in found]


def contact_enrollments_plan(contact_id: str) -> Plan[list[CampaignEnrollment]]:
    """The contact's running enrollments, in any campaign."""
    found = yield (
        f"SELECT {_ENROLLMENT.sql} FROM campaign_enrollments e "  # noqa: S608
        "WHERE e.contact_id = ? AND e.status = 'active' ORDER BY e.started_at, e.id",
        (contact_id,),
    )
    return [_ENROLLMENT.load(row) for row in found]


def contact_ids_plan(workspace_id: str, phones: Sequence[str]) -> Plan[list[str]]:
    """The ids of the workspace's contacts with these phone numbers (E.164)."""
    if not phones:
        return []
    found = yield (
        f"SELECT id FROM contacts WHERE workspace_id = ? AND phone IN ({marks(len(phones))})",  # noqa: S608
        (workspace_id, *phones),
    )
    return [str(contact_id) for (contact_id,) in found]


def waiting_plan(message_ids: Sequence[str]) -> Plan[dict[str, datetime | None]]:
    """Which of these messages still wait for their time (`scheduled`), with that time."""
    waiting: dict[str, datetime | None] = {}
    for start in range(0, len(message_ids), _CHUNK):
        chunk = list(message_ids[start : start + _CHUNK])
        found = yield (
            "SELECT id, send_at FROM messages "  # noqa: S608
            f"WHERE status = '{MessageStatus.SCHEDULED.value}' AND id IN ({marks(len(chunk))})",
            chunk,
        )
        waiting.update({str(message_id): parse_ts(at) for message_id, at in found})
    return waiting


def add_enrollment_plan(
    dialect: Dialect,
    *,
    campaign_id: str,
    workspace_id: str,
    contact_id: str,
    conversation_id: str,
    message_ids: Sequence[str],
    status: str,
) -> Plan[str]:
    """A contact starting a campaign, by one INSERT; the enrollment's id."""
    enrollment_id = new_id("enr")
    stamp = dialect.ts(utcnow())
    yield (
        "INSERT INTO campaign_enrollments (id, campaign_id, workspace_id, contact_id, "
        "conversation_id, status, message_ids, started_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            enrollment_id,
            campaign_id,
            workspace_id,
            contact_id,
            conversation_id,
            status,
            dialect.json(list(message_ids)),
            stamp,
            stamp,
        ),
    )
    return enrollment_id


def enrollment_status_plan(dialect: Dialect, enrollment_id: str, status: str) -> Plan[None]:
    yield (
        "UPDATE campaign_enrollments SET status = ?, updated_at = ? WHERE id = ?",
        (status, dialect.ts(utcnow()), enrollment_id),
    )
