"""Store inbound texts in batches: many webhooks, one transaction, a handful of statements.

For a batch of texts this runs, whatever its size: one look-up of provider ids already stored,
one contact upsert, one look-up of live threads, at most one insert of new threads and one touch
of existing ones, one message insert and one turn-job upsert. A provider retry (an id already
stored, or twice in one batch) is answered from what is stored and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import ACTIVE_JOB_PREDICATE
from storage.raw import Dialect, Plan, marks
from storage.types import new_id, utcnow

TURN_JOB = "turn"
JOBS_CHANNEL = "smsagent_jobs"


def turn_key(conversation_id: str) -> str:
    return f"turn:{conversation_id}"


@dataclass(frozen=True)
class InboundRow:
    workspace_id: str
    provider: str
    provider_message_id: str
    from_number: str
    to_number: str
    body: str
    media_urls: tuple[str, ...]
    turn_delay_seconds: float
    max_attempts: int


@dataclass(frozen=True)
class Stored:
    message_id: str
    conversation_id: str
    duplicate: bool
    contact_id: str | None = None  # for a text stored by this call


class MessageConflict(Exception):
    """Another writer stored one of these provider ids first; the batch must be redone."""


def store_inbound(dialect: Dialect, batch: Sequence[InboundRow]) -> Plan[list[Stored]]:
    """The statements that store `batch`; one `Stored` per row, in order."""
    now = utcnow()
    known = yield from _stored_already(batch)
    fresh: list[int] = []
    first_of: dict[tuple[str, str], int] = {}
    for i, row in enumerate(batch):
        ident = (row.provider, row.provider_message_id)
        if ident not in known and ident not in first_of:
            first_of[ident] = i
            fresh.append(i)
    results: dict[int, Stored] = {}
    if fresh:
        new = [batch[i] for i in fresh]
        contact_ids = yield from _upsert_contacts(dialect, new, now)
        threads = yield from _threads(dialect, new, contact_ids, now)
        message_ids = [new_id("msg") for _ in new]
        yield from _insert_messages(dialect, new, threads, message_ids, now)
        yield from _enqueue_turns(dialect, new, threads, now)
        if dialect.postgres and any(row.turn_delay_seconds <= 0 for row in new):
            # A turn due now wakes workers in other processes; one due after the quiet window
            # waits for this process's worker (nudged locally) or another's next poll.
            yield (f"SELECT pg_notify('{JOBS_CHANNEL}', '{TURN_JOB}')", ())
        for i, row, message_id in zip(fresh, new, message_ids, strict=True):
            conversation_id = threads[(row.workspace_id, row.from_number, row.to_number)]
            contact_id = contact_ids[(row.workspace_id, row.from_number)]
            results[i] = Stored(message_id, conversation_id, False, contact_id=contact_id)
    out: list[Stored] = []
    for i, row in enumerate(batch):
        if i in results:
            out.append(results[i])
            continue
        ident = (row.provider, row.provider_message_id)
        if ident in known:
            message_id, conversation_id = known[ident]
        else:
            first = results[first_of[ident]]
            message_id, conversation_id = first.message_id, first.conversation_id
        out.append(Stored(message_id, conversation_id, duplicate=True))
    return out


def _stored_already(
    batch: Sequence[InboundRow],
) -> Plan[dict[tuple[str, str], tuple[str, str]]]:
    known: dict[tuple[str, str], tuple[str, str]] = {}
    by_provider: dict[str, set[str]] = {}
    for row in batch:
        by_provider.setdefault(row.provider, set()).add(row.provider_message_id)
    for provider, ids in by_provider.items():
        found = yield (
            "SELECT provider_message_id, id, conversation_id FROM messages "
            f"WHERE provider = ? AND provider_message_id IN ({marks(len(ids))})",
            (provider, *sorted(ids)),
        )
        for provider_id, message_id, conversation_id in found:
            known[(provider, provider_id)] = (message_id, conversation_id)
    return known


def _upsert_contacts(
    dialect: Dialect, batch: Sequence[InboundRow], now: datetime
) -> Plan[dict[tuple[str, str], str]]:
    """Contact ids by (workspace, phone), creating new contacts.

    The no-op update makes RETURNING answer for existing rows too, and on PostgreSQL takes each
    contact's row lock until commit: concurrent writers (other processes) that see the same
    number wait here, so two of them never open two threads for one contact. Phones are sorted
    so two batches lock in the same order and cannot deadlock. The column it sets is no key:
    setting one (`phone`) would take the lock that also shuts out foreign-key checks, and a
    turn writing the contact's thread meanwhile would wait on this batch while it waits on the
    turn.
    """
    keys = sorted({(r.workspace_id, r.from_number) for r in batch})
    stamp, empty_map, empty_list, no = dialect.ts(now), "{}", "[]", dialect.flag(False)
    params: list[object] = []
    for workspace_id, phone in keys:
        params += [new_id("ct"), workspace_id, phone, empty_map, empty_list, no, no, stamp, stamp]
    upserted = yield (
        "INSERT INTO contacts (id, workspace_id, phone, custom_fields, tags, opted_out, blocked, "
        f"created_at, updated_at) VALUES {marks(len(keys), 9)} "
        "ON CONFLICT (workspace_id, phone) DO UPDATE SET updated_at = contacts.updated_at "
        "RETURNING id, workspace_id, phone",
        params,
    )
    return {(workspace_id, phone): contact_id for contact_id, workspace_id, phone in upserted}


def _threads(
    dialect: Dialect,
    batch: Sequence[InboundRow],
    contact_ids: dict[tuple[str, str], str],
    now: datetime,
) -> Plan[dict[tuple[str, str, str], str]]:
    """The live thread for each (workspace, customer, our number): the newest one not closed,
    or a new one. Existing threads are touched; new ones are opened by one insert."""
    wanted = {(r.workspace_id, r.from_number, r.to_number): r.provider for r in batch}
    by_contact = {contact_ids[(w, phone)]: (w, phone) for w, phone, _ in wanted}
    live = yield (
        "SELECT id, contact_id, sender_number FROM conversations "
        f"WHERE contact_id IN ({marks(len(by_contact))}) AND status IN ('open', 'pending') "
        "ORDER BY created_at DESC, id DESC",
        sorted(by_contact),
    )
    threads: dict[tuple[str, str, str], str] = {}
    for conversation_id, contact_id, sender in live:
        workspace_id, phone = by_contact[contact_id]
        threads.setdefault((workspace_id, phone, sender), conversation_id)
    touched = [threads[key] for key in wanted if key in threads]
    stamp = dialect.ts(now)
    if touched:
        yield (
            "UPDATE conversations SET last_message_at = ?, updated_at = ? "
            f"WHERE id IN ({marks(len(touched))})",
            (stamp, stamp, *sorted(touched)),
        )
    missing = [key for key in wanted if key not in threads]
    if missing:
        params: list[object] = []
        for key in missing:
            workspace_id, phone, sender = key
            threads[key] = conversation_id = new_id("conv")
            params += [
                conversation_id,
                workspace_id,
                contact_ids[(workspace_id, phone)],
                sender,
                wanted[key],
                stamp,
                stamp,
                stamp,
            ]
        yield (
            "INSERT INTO conversations (id, workspace_id, contact_id, sender_number, provider, "
            "status, mode, created_at, updated_at, last_message_at) VALUES "
            + ",".join(["(?, ?, ?, ?, ?, 'open', 'agent', ?, ?, ?)"] * len(missing)),
            params,
        )
    return threads


def _insert_messages(
    dialect: Dialect,
    batch: Sequence[InboundRow],
    threads: dict[tuple[str, str, str], str],
    message_ids: Sequence[str],
    now: datetime,
) -> Plan[None]:
    stamp = dialect.ts(now)
    params: list[object] = []
    for row, message_id in zip(batch, message_ids, strict=True):
        params += [
            message_id,
            row.workspace_id,
            threads[(row.workspace_id, row.from_number, row.to_number)],
            row.body,
            dialect.json(list(row.media_urls)),
            row.from_number,
            row.to_number,
            row.provider,
            row.provider_message_id,
            stamp,
            stamp,
        ]
    statement = (
        "INSERT INTO messages (id, workspace_id, conversation_id, direction, author, body, "
        "media_urls, from_number, to_number, provider, provider_message_id, status, segments, "
        "created_at, updated_at) VALUES "
        + ",".join(
            ["(?, ?, ?, 'inbound', 'contact', ?, ?, ?, ?, ?, ?, 'received', 0, ?, ?)"] * len(batch)
        )
        + " ON CONFLICT (provider, provider_message_id) DO NOTHING RETURNING id"
    )
    inserted = yield (statement, params)
    if len(inserted) != len(batch):
        # Another process stored one of these ids since the look-up: redo the batch.
        raise MessageConflict


def _enqueue_turns(
    dialect: Dialect,
    batch: Sequence[InboundRow],
    threads: dict[tuple[str, str, str], str],
    now: datetime,
) -> Plan[None]:
    """One turn job per thread; a thread's waiting (or running) turn is moved, not doubled:
    texts in the quiet window are answered together."""
    due: dict[str, tuple[datetime, int]] = {}
    for row in batch:
        conversation_id = threads[(row.workspace_id, row.from_number, row.to_number)]
        due[conversation_id] = (now + timedelta(seconds=row.turn_delay_seconds), row.max_attempts)
    stamp = dialect.ts(now)
    params: list[object] = []
    for conversation_id, (run_at, max_attempts) in sorted(due.items()):
        params += [
            turn_key(conversation_id),
            dialect.json({"conversation_id": conversation_id}),
            dialect.ts(run_at),
            max_attempts,
            stamp,
            stamp,
        ]
    # The partial index's predicate is written out: bound parameters would stop PostgreSQL
    # matching it once the prepared statement goes generic.
    yield (
        "INSERT INTO jobs (kind, key, payload, status, run_at, attempts, max_attempts, "
        "created_at, updated_at) VALUES "
        + ",".join([f"('{TURN_JOB}', ?, ?, 'queued', ?, 0, ?, ?, ?)"] * len(due))
        + f" ON CONFLICT (key) WHERE {ACTIVE_JOB_PREDICATE} "
        "DO UPDATE SET run_at = excluded.run_at, updated_at = excluded.updated_at",
        params,
    )
