# Hand-written SQL: only placeholders (`?`) and constants are formatted into the statements.
# ruff: noqa: S608
"""Broadcasts: audiences as SQL over contacts, recipients and what became of them, counters.

An audience (`Broadcast.audience`) is the union of: contacts with any of `via_tags`, the
contacts `via_contact_ids`, those with one of `via_phone_numbers`, and those whose field equals
one of the `via_field` values exactly. A draft's audience is counted live; publishing copies it
into `broadcast_recipients` once. Each recipient row then says what became of its contact:

- `pending`: not texted yet; `held`: waiting for the end of the recipient's quiet hours
  (`attempted_at` is when they end);
- `queued`: its text is queued (`message_id`, `conversation_id`, `attempted_at`);
- `skipped`: never texted (opted out, blocked, a landline, no marketing consent: `error_code`);
- `failed`: the send was refused for another reason (`error_code`).

Counters are computed at read time from the recipients joined to their messages and contacts.
JSON fields are read with each database's own functions: SQLite's `json_each`, PostgreSQL's
`->>` and `json_array_elements_text`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import inbox_threads
from storage.inbound import JOBS_CHANNEL
from storage.models import ACTIVE_JOB_PREDICATE, Broadcast, BroadcastStatus, Contact, User
from storage.raw import Columns, Dialect, Plan, marks, parse_json, parse_ts
from storage.types import utcnow


class RecipientStatus(StrEnum):
    PENDING = "pending"
    HELD = "held"
    QUEUED = "queued"
    SKIPPED = "skipped"
    FAILED = "failed"


# The inbox's fields kept in the contact's `profile`; any other `via_field` name is a custom
# variable, looked for in `custom_fields` and then in `profile`.
PROFILE_FIELDS = frozenset(
    {
        "company",
        "street",
        "city",
        "state",
        "country",
        "zip",
        "priority",
        "salesforce_object_id",
        "salesforce_object_type",
    }
)
_WAITING = "('pending', 'held')"
_BROADCAST = Columns(Broadcast, "b")


@dataclass(frozen=True)
class FieldMatch:
    field: str
    value: str


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to (phones in E.164, a phone field's value too), and whether it is
    marketing (sent only to contacts who consented)."""

    tags: tuple[str, ...] = ()
    contact_ids: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    fields: tuple[FieldMatch, ...] = ()
    marketing: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Audience:
        data = data or {}
        return cls(
            tags=tuple(data.get("via_tags", ())),
            contact_ids=tuple(data.get("via_contact_ids", ())),
            phones=tuple(data.get("via_phone_numbers", ())),
            fields=tuple(FieldMatch(f["field"], f["value"]) for f in data.get("via_field", ())),
            marketing=data.get("message_type") == "marketing",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "via_tags": list(self.tags),
            "via_contact_ids": list(self.contact_ids),
            "via_phone_numbers": list(self.phones),
            "via_field": [{"field": f.field, "value": f.value} for f in self.fields],
            "message_type": "marketing" if self.marketing else "transactional",
        }

    def adding(self, more: Audience) -> Audience:
        """This audience and `more` together (an update adds to the audience); `more` says
        whether it is marketing."""
        return Audience(
            tags=_union(self.tags, more.tags),
            contact_ids=_union(self.contact_ids, more.contact_ids),
            phones=_union(self.phones, more.phones),
            fields=_union(self.fields, more.fields),
            marketing=more.marketing,
        )


def _union(first: Sequence[Any], second: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def _where(dialect: Dialect, audience: Audience) -> tuple[str, list[Any]]:
    """The audience as a condition on contacts `c`, with its parameters."""
    parts: list[str] = []
    params: list[Any] = []
    if audience.tags:
        if dialect.postgres:
            elements = (
                "json_array_elements_text(CASE WHEN json_typeof(c.tags) = 'array' "
                "THEN c.tags ELSE '[]'::json END) t(v)"
            )
            parts.append(
                f"EXISTS (SELECT 1 FROM {elements} WHERE t.v IN ({marks(len(audience.tags))}))"
            )
        else:
            parts.append(
                "EXISTS (SELECT 1 FROM json_each(c.tags) t "
                f"WHERE t.value IN ({marks(len(audience.tags))}))"
            )
        params += audience.tags
    if audience.contact_ids:
        parts.append(f"c.id IN ({marks(len(audience.contact_ids))})")
        params += audience.contact_ids
    if audience.phones:
        parts.append(f"c.phone IN ({marks(len(audience.phones))})")
        params += audience.phones
    for match in audience.fields:
        condition, values = _field(dialect, match)
        parts.append(condition)
        params += values
    if not parts:
        return "1 = 0", []
    return "(" + " OR ".join(parts) + ")", params


def _field(dialect: Dialect, match: FieldMatch) -> tuple[str, list[Any]]:
    name, value = match.field, match.value
    if name == "name":
        full = "TRIM(COALESCE(c.first_name, '') || ' ' || COALESCE(c.last_name, ''))"
        return f"{full} = ?", [value]
    if name == "email":
        return "c.email = ?", [value]
    if name in ("phone", "phone_formatted"):
        return "c.phone = ?", [value]
    if name == "opted_out":
        return "c.opted_out = ?", [dialect.flag(value == "true")]
    if name in PROFILE_FIELDS:
        return _json_value(dialect, "c.profile"), [name, value]
    either = f"({_json_value(dialect, 'c.custom_fields')} OR {_json_value(dialect, 'c.profile')})"
    return either, [name, value, name, value]


def _json_value(dialect: Dialect, column: str) -> str:
    """`column`'s member named by the first parameter, as text, equals the second (true and
    false read as 'true' and 'false' in both databases)."""
    if dialect.postgres:
        return f"({column} ->> CAST(? AS TEXT)) = ?"
    text = (
        "CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        "ELSE CAST(j.atom AS TEXT) END"
    )
    return f"EXISTS (SELECT 1 FROM json_each({column}) j WHERE j.key = ? AND {text} = ?)"


# --- Drafts -----------------------------------------------------------------------------------


def audience_size_plan(dialect: Dialect, workspace_id: str, audience: Audience) -> Plan[int]:
    """How many of the workspace's contacts the audience holds now."""
    where, params = _where(dialect, audience)
    found = yield (
        f"SELECT count(*) FROM contacts c WHERE c.workspace_id = ? AND {where}",
        (workspace_id, *params),
    )
    return int(found[0][0])


async def known_contacts(
    *, session: AsyncSession, workspace_id: str, contact_ids: Sequence[str]
) -> set[str]:
    """Which of these ids are the workspace's contacts."""
    if not contact_ids:
        return set()
    found = await session.exec(
        select(Contact.id).where(
            Contact.workspace_id == workspace_id, col(Contact.id).in_(list(contact_ids))
        )
    )
    return set(found.all())


async def get_broadcasts(
    *, session: AsyncSession, workspace_id: str, ids: Sequence[str], lock: bool = False
) -> list[Broadcast]:
    """The workspace's broadcasts among `ids`, in the order of `ids`."""
    query = select(Broadcast).where(
        Broadcast.workspace_id == workspace_id, col(Broadcast.id).in_(list(ids))
    )
    if lock:
        query = query.with_for_update()
    found = {b.id: b for b in await session.exec(query)}
    return [found[i] for i in ids if i in found]


async def list_broadcasts(
    *,
    session: AsyncSession,
    workspace_id: str,
    offset: int,
    limit: int,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> list[Broadcast]:
    """The workspace's broadcasts, newest first, created within the bounds given."""
    query = select(Broadcast).where(Broadcast.workspace_id == workspace_id)
    if created_from is not None:
        query = query.where(col(Broadcast.created_at) >= created_from)
    if created_to is not None:
        query = query.where(col(Broadcast.created_at) <= created_to)
    query = query.order_by(col(Broadcast.created_at).desc(), col(Broadcast.id).desc())
    return list(await session.exec(query.offset(offset).limit(limit)))


async def creators(*, session: AsyncSession, broadcasts: Sequence[Broadcast]) -> dict[str, User]:
    """The team members who made these broadcasts, by id."""
    ids = sorted({b.user_id for b in broadcasts if b.user_id})
    if not ids:
        return {}
    return {u.id: u for u in await session.exec(select(User).where(col(User.id).in_(ids)))}


# --- Publishing -------------------------------------------------------------------------------


def publish_plan(
    dialect: Dialect,
    *,
    workspace_id: str,
    broadcast_id: str,
    at: datetime,
    number: str,
) -> Plan[tuple[str | None, str | None]]:
    """Publish a draft: its audience becomes its recipients (once), and it starts at `at` from
    `number`; a scheduled one only moves to `at`. Answers the status it had (None: no such
    broadcast) and the number it goes from (None: nothing changed, it was neither a draft nor
    scheduled)."""
    now = utcnow()
    lock = " FOR UPDATE" if dialect.postgres else ""
    found = yield (
        "SELECT status, audience, sender_number FROM broadcasts "
        f"WHERE id = ? AND workspace_id = ?{lock}",
        (broadcast_id, workspace_id),
    )
    if not found:
        return None, None
    status, audience, chosen = found[0]
    if status not in (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED):
        return str(status), None
    if status == BroadcastStatus.DRAFT:
        where, params = _where(dialect, Audience.from_json(parse_json(audience)))
        yield (
            "INSERT INTO broadcast_recipients (broadcast_id, contact_id, status, created_at) "
            f"SELECT ?, c.id, 'pending', ? FROM contacts c WHERE c.workspace_id = ? AND {where} "
            "ON CONFLICT (broadcast_id, contact_id) DO NOTHING",
            (broadcast_id, dialect.ts(now), workspace_id, *params),
        )
    starting = BroadcastStatus.SENDING if at <= now else BroadcastStatus.SCHEDULED
    yield (
        "UPDATE broadcasts SET status = ?, scheduled_for = ?, published_at = COALESCE("
        "published_at, ?), sender_number = COALESCE(sender_number, ?), updated_at = ? "
        "WHERE id = ?",
        (
            starting.value,
            dialect.ts(max(at, now)),
            dialect.ts(now),
            number,
            dialect.ts(now),
            broadcast_id,
        ),
    )
    return str(status), str(chosen or number)


def wake_plan(
    dialect: Dialect,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any],
    at: datetime,
    soonest: datetime,
    max_attempts: int,
) -> Plan[None]:
    """Have the job `key` run by `at`: added when none is unfinished, else brought forward to
    `at`, but never before `soonest` (its pace: a job waiting for its next slot keeps it)."""
    stamp = dialect.ts(utcnow())
    # The partial index's predicate is written out (see `jobs.enqueue_plan`).
    yield (
        "INSERT INTO jobs (kind, key, payload, status, run_at, attempts, max_attempts, "
        "created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, 0, ?, ?, ?) "
        f"ON CONFLICT (key) WHERE {ACTIVE_JOB_PREDICATE} DO UPDATE SET "
        "run_at = CASE WHEN jobs.run_at < ? THEN jobs.run_at ELSE ? END, "
        "updated_at = excluded.updated_at",
        (
            kind,
            key,
            dialect.json(payload),
            dialect.ts(at),
            max_attempts,
            stamp,
            stamp,
            dialect.ts(max(at, soonest)),
            dialect.ts(max(at, soonest)),
        ),
    )
    if dialect.postgres:
        yield (f"SELECT pg_notify('{JOBS_CHANNEL}', ?)", (kind,))


# --- Sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueRecipient:
    contact_id: str
    phone: str
    first_name: str | None
    last_name: str | None
    email: str | None
    timezone: str | None
    profile: dict[str, Any]
    custom_fields: dict[str, Any]


def start_due_plan(
    dialect: Dialect, *, workspace_id: str, number: str, now: datetime
) -> Plan[list[Broadcast]]:
    """Start the number's broadcasts whose time has come and complete those with nobody left
    to text; those sending, in the order they started."""
    yield (
        "UPDATE broadcasts SET status = 'sending', updated_at = ? WHERE workspace_id = ? "
        "AND sender_number = ? AND status = 'scheduled' AND scheduled_for <= ?",
        (dialect.ts(now), workspace_id, number, dialect.ts(now)),
    )
    yield from complete_plan(dialect, workspace_id=workspace_id, number=number, now=now)
    found = yield (
        f"SELECT {_BROADCAST.sql} FROM broadcasts b WHERE b.workspace_id = ? "
        "AND b.sender_number = ? AND b.status = 'sending' ORDER BY b.scheduled_for, b.id",
        (workspace_id, number),
    )
    return [_BROADCAST.load(row) for row in found]


def complete_plan(
    dialect: Dialect, *, workspace_id: str, number: str, now: datetime
) -> Plan[list[str]]:
    """Mark completed the number's sending broadcasts with nobody left to text; their ids."""
    found = yield (
        "UPDATE broadcasts SET status = 'completed', completed_at = ?, updated_at = ? "
        "WHERE workspace_id = ? AND sender_number = ? AND status = 'sending' AND NOT EXISTS ("
        "SELECT 1 FROM broadcast_recipients r WHERE r.broadcast_id = broadcasts.id "
        f"AND r.status IN {_WAITING}) RETURNING id",
        (dialect.ts(now), dialect.ts(now), workspace_id, number),
    )
    return [str(broadcast_id) for (broadcast_id,) in found]


def due_recipients_plan(
    dialect: Dialect, broadcast_id: str, *, after: str, now: datetime, limit: int
) -> Plan[list[DueRecipient]]:
    """The broadcast's recipients to text now (pending, or held until before `now`), in
    contact id order after `after`."""
    found = yield (
        "SELECT r.contact_id, c.phone, c.first_name, c.last_name, c.email, c.timezone, "
        "c.profile, c.custom_fields FROM broadcast_recipients r "
        "JOIN contacts c ON c.id = r.contact_id WHERE r.broadcast_id = ? AND r.contact_id > ? "
        "AND (r.status = 'pending' OR (r.status = 'held' AND r.attempted_at <= ?)) "
        "ORDER BY r.contact_id LIMIT ?",
        (broadcast_id, after, dialect.ts(now), limit),
    )
    return [
        DueRecipient(
            contact_id=row[0],
            phone=row[1],
            first_name=row[2],
            last_name=row[3],
            email=row[4],
            timezone=row[5],
            profile=parse_json(row[6]) or {},
            custom_fields=parse_json(row[7]) or {},
        )
        for row in found
    ]


def queued_plan(
    dialect: Dialect,
    *,
    broadcast_id: str,
    contact_id: str,
    message_id: str,
    conversation_id: str,
    sender_user_id: str | None,
    status_callback: str | None,
) -> Plan[bool]:
    """Record the recipient's text as queued, sent by the broadcast's creator, its delivery
    statuses going to `status_callback`; False when the recipient was no longer waiting, so
    the caller undoes the send."""
    found = yield (
        "UPDATE broadcast_recipients SET status = 'queued', message_id = ?, conversation_id = ?, "
        "error_code = NULL, attempted_at = ? WHERE broadcast_id = ? AND contact_id = ? "
        f"AND status IN {_WAITING} RETURNING contact_id",
        (message_id, conversation_id, dialect.ts(utcnow()), broadcast_id, contact_id),
    )
    # Every broadcast the inbox API makes has its creator.
    if found and sender_user_id is not None:
        yield from inbox_threads.sent_by_plan(dialect, message_id, sender_user_id, status_callback)
    return bool(found)


def settle_recipient_plan(
    dialect: Dialect,
    *,
    broadcast_id: str,
    contact_id: str,
    status: RecipientStatus,
    error_code: str | None = None,
    until: datetime | None = None,
) -> Plan[bool]:
    """Mark a waiting recipient skipped or failed (with why), or held `until` a time."""
    found = yield (
        "UPDATE broadcast_recipients SET status = ?, error_code = ?, attempted_at = ? "
        f"WHERE broadcast_id = ? AND contact_id = ? AND status IN {_WAITING} RETURNING contact_id",
        (
            status.value,
            error_code,
            dialect.ts(until or utcnow()),
            broadcast_id,
            contact_id,
        ),
    )
    return bool(found)


def next_due_plan(
    dialect: Dialect, *, workspace_id: str, number: str, now: datetime
) -> Plan[datetime | None]:
    """When the number next has broadcast texts to send: `now` when some are due, else the
    earliest scheduled start or end of a hold; None when there is nothing left."""
    due = yield (
        "SELECT 1 FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id "
        "WHERE b.workspace_id = ? AND b.sender_number = ? AND b.status = 'sending' "
        "AND (r.status = 'pending' OR (r.status = 'held' AND r.attempted_at <= ?)) LIMIT 1",
        (workspace_id, number, dialect.ts(now)),
    )
    if due:
        return now
    later = yield (
        "SELECT min(t) FROM (SELECT min(scheduled_for) AS t FROM broadcasts "
        "WHERE workspace_id = ? AND sender_number = ? AND status = 'scheduled' "
        "UNION ALL SELECT min(r.attempted_at) AS t FROM broadcast_recipients r "
        "JOIN broadcasts b ON b.id = r.broadcast_id WHERE b.workspace_id = ? "
        "AND b.sender_number = ? AND b.status = 'sending' AND r.status = 'held') x",
        (workspace_id, number, workspace_id, number),
    )
    return parse_ts(later[0][0]) if later else None


# --- Counters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """What became of a broadcast's audience (`waiting`: not texted yet)."""

    audience: int = 0
    waiting: int = 0
    attempted: int = 0
    delivered: int = 0
    undelivered: int = 0
    responded: int = 0
    replied_stop: int = 0
    # Error code -> recipients (never texted, or whose text failed).
    errors: dict[str, int] = field(default_factory=dict)


def counters_plan(dialect: Dialect, broadcast_ids: Sequence[str]) -> Plan[dict[str, Counters]]:
    """Counters of published broadcasts, from their recipients, messages and contacts.

    `attempted`: texts handed to sending (not canceled or still scheduled); `delivered` and
    `undelivered` by the message's status; `responded`: the contact texted in the thread after
    the broadcast's text; `replied_stop`: the contact opted out by a reply (STOP or its like)
    after it."""
    if not broadcast_ids:
        return {}
    ids = list(broadcast_ids)
    found = yield (
        "SELECT x.broadcast_id, count(*), sum(x.waiting), sum(x.attempted), sum(x.delivered), "
        "sum(x.undelivered), sum(x.responded), sum(x.replied_stop) FROM (SELECT r.broadcast_id, "
        f"CASE WHEN r.status IN {_WAITING} THEN 1 ELSE 0 END AS waiting, "
        "CASE WHEN m.status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', "
        "'failed') THEN 1 ELSE 0 END AS attempted, "
        "CASE WHEN m.status = 'delivered' THEN 1 ELSE 0 END AS delivered, "
        "CASE WHEN m.status IN ('undelivered', 'failed') THEN 1 ELSE 0 END AS undelivered, "
        "CASE WHEN m.id IS NOT NULL AND EXISTS (SELECT 1 FROM messages i "
        "WHERE i.conversation_id = r.conversation_id AND i.direction = 'inbound' "
        "AND i.created_at > m.created_at) THEN 1 ELSE 0 END AS responded, "
        "CASE WHEN m.id IS NOT NULL AND c.opted_out = ? "
        "AND c.opt_out_source IN ('keyword', 'natural_language') "
        "AND c.opted_out_at > m.created_at THEN 1 ELSE 0 END AS replied_stop "
        "FROM broadcast_recipients r JOIN contacts c ON c.id = r.contact_id "
        "LEFT JOIN messages m ON m.id = r.message_id "
        f"WHERE r.broadcast_id IN ({marks(len(ids))})) x GROUP BY x.broadcast_id",
        (dialect.flag(True), *ids),
    )
    errors = yield (
        "SELECT r.broadcast_id, COALESCE(m.error_code, r.error_code, 'unknown'), count(*) "
        "FROM broadcast_recipients r LEFT JOIN messages m ON m.id = r.message_id "
        f"WHERE r.broadcast_id IN ({marks(len(ids))}) AND (r.status IN ('skipped', 'failed') "
        "OR m.status IN ('undelivered', 'failed', 'canceled')) GROUP BY 1, 2",
        ids,
    )
    by_code: dict[str, dict[str, int]] = {}
    for broadcast_id, code, count in errors:
        by_code.setdefault(broadcast_id, {})[str(code)] = int(count)
    return {
        row[0]: Counters(
            audience=int(row[1]),
            waiting=int(row[2] or 0),
            attempted=int(row[3] or 0),
            delivered=int(row[4] or 0),
            undelivered=int(row[5] or 0),
            responded=int(row[6] or 0),
            replied_stop=int(row[7] or 0),
            errors=by_code.get(row[0], {}),
        )
        for row in found
    }
