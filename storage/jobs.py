"""The durable job queue: jobs live in the database, are leased in batches, retried, recovered.

A lease carries a token (`leased_by`); every later write names it, so a worker whose lease ran
out (and whose job another worker took over) can no longer change the job. Keys are unique among
unfinished jobs: enqueuing a key that is already waiting or running folds into that job.
Workers lease by kind (`lanes`), so replies waiting to be sent never queue behind turns waiting
on the model. On PostgreSQL an enqueue also NOTIFYs, waking idle workers in every process.

Everything here is hand-written SQL on a connection (a session passes `await
session.connection()`): the queue is on every text's path.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.inbound import JOBS_CHANNEL
from storage.models import ACTIVE_JOB_PREDICATE, Job, JobStatus
from storage.raw import Dialect, Plan, marks, parse_json, parse_ts, run, run_plan
from storage.types import utcnow

_COLUMNS = "id, kind, key, payload, attempts, max_attempts, last_error"


@dataclass(frozen=True)
class Lease:
    """A job this worker holds, and the token that proves it."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    last_error: str | None
    token: str


def dialect_of(conn: AsyncConnection) -> Dialect:
    return Dialect(conn.dialect.name)


def lease_token(worker_id: str) -> str:
    return f"{worker_id}:{secrets.token_hex(6)}"


def enqueue_plan(
    dialect: Dialect,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 6,
    fold: bool = False,
    lease: tuple[str, float] | None = None,
) -> Plan[int | None]:
    """Add a job unless one with `key` is unfinished; its id when added (or folded into).

    With `fold`, an unfinished job with the key is pushed back to `run_at` instead: a text that
    arrives during the quiet window (or while its turn is running) moves the turn, not adds one.
    With `lease` (token, seconds) the job is born leased to the caller, who runs it at once.
    """
    now = utcnow()
    stamp = dialect.ts(now)
    if lease is None:
        status, attempts, token, until = JobStatus.QUEUED.value, 0, None, None
    else:
        status, attempts = JobStatus.RUNNING.value, 1
        token, until = lease[0], dialect.ts(now + timedelta(seconds=lease[1]))
    conflict = (
        "DO UPDATE SET run_at = excluded.run_at, updated_at = excluded.updated_at"
        if fold
        else "DO NOTHING"
    )
    # The partial index's predicate is written out: bound parameters would stop PostgreSQL
    # matching it once the prepared statement goes generic.
    found = yield (
        "INSERT INTO jobs (kind, key, payload, status, run_at, attempts, max_attempts, "
        "lease_until, leased_by, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (key) WHERE {ACTIVE_JOB_PREDICATE} {conflict} RETURNING id",
        (
            kind,
            key,
            dialect.json(payload or {}),
            status,
            dialect.ts(run_at or now),
            attempts,
            max_attempts,
            until,
            token,
            stamp,
            stamp,
        ),
    )
    if dialect.postgres and lease is None:
        yield (f"SELECT pg_notify('{JOBS_CHANNEL}', ?)", (kind,))
    return int(found[0][0]) if found else None


def enqueue_many_plan(
    dialect: Dialect,
    *,
    kind: str,
    entries: Sequence[tuple[str, dict[str, Any]]],
    max_attempts: int = 6,
) -> Plan[None]:
    """Add jobs due now, (key, payload) each, by one INSERT; a key already unfinished is left
    as it is."""
    if not entries:
        return
    stamp = dialect.ts(utcnow())
    params: list[object] = []
    for key, payload in entries:
        params += [kind, key, dialect.json(payload), stamp, max_attempts, stamp, stamp]
    yield (
        "INSERT INTO jobs (kind, key, payload, status, run_at, attempts, max_attempts, "
        "created_at, updated_at) VALUES "
        + ",".join(["(?, ?, ?, 'queued', ?, 0, ?, ?, ?)"] * len(entries))
        + f" ON CONFLICT (key) WHERE {ACTIVE_JOB_PREDICATE} DO NOTHING",
        params,
    )
    if dialect.postgres:
        yield (f"SELECT pg_notify('{JOBS_CHANNEL}', ?)", (kind,))


async def lease_batch(
    *,
    conn: AsyncConnection,
    kinds: Sequence[str],
    limit: int,
    worker_id: str,
    lease_seconds: float,
) -> list[Lease]:
    leased, _ = await run_plan(
        conn, lease_plan(dialect_of(conn), kinds, limit, worker_id, lease_seconds)
    )
    return leased


def lease_plan(
    dialect: Dialect, kinds: Sequence[str], limit: int, worker_id: str, lease_seconds: float
) -> Plan[tuple[list[Lease], datetime | None]]:
    """Take up to `limit` of the most overdue jobs of `kinds`: queued and due, or running with
    a lapsed lease (their worker died). PostgreSQL skips rows other workers are taking.
    With none to take, also say when the next one falls due (or a running one's lease lapses)."""
    now = utcnow()
    token = lease_token(worker_id)
    skip_locked = " FOR UPDATE SKIP LOCKED" if dialect.postgres else ""
    found = yield (
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?, "
        "leased_by = ?, updated_at = ? WHERE id IN ("
        f"SELECT id FROM jobs WHERE kind IN ({marks(len(kinds))}) AND ("
        "(status = 'queued' AND run_at <= ?) OR (status = 'running' AND lease_until < ?)) "
        f"ORDER BY run_at LIMIT ?{skip_locked}) RETURNING {_COLUMNS}",
        (
            dialect.ts(now + timedelta(seconds=lease_seconds)),
            token,
            dialect.ts(now),
            *kinds,
            dialect.ts(now),
            dialect.ts(now),
            limit,
        ),
    )
    if found:
        return sorted((_lease(row, token) for row in found), key=lambda lease: lease.id), None
    due = yield (
        "SELECT min(CASE WHEN status = 'queued' THEN run_at ELSE lease_until END) FROM jobs "
        f"WHERE kind IN ({marks(len(kinds))}) AND status IN ('queued', 'running')",
        tuple(kinds),
    )
    return [], parse_ts(due[0][0]) if due else None


async def extend_leases(
    *, conn: AsyncConnection, leases: Sequence[Lease], lease_seconds: float
) -> set[int]:
    """Renew all of a worker's leases in one statement; the ids still held."""
    if not leases:
        return set()
    dialect = dialect_of(conn)
    now = utcnow()
    tokens = sorted({lease.token for lease in leases})
    ids = sorted(lease.id for lease in leases)
    # PostgreSQL locks the rows in key order first, the order in which a batch of texts folds
    # into their turns: two multi-row writers that lock in different orders can deadlock.
    lock = " ORDER BY key FOR UPDATE" if dialect.postgres else ""
    result = await run(
        conn,
        dialect,
        "UPDATE jobs SET lease_until = ?, updated_at = ? WHERE id IN ("
        f"SELECT id FROM jobs WHERE status = 'running' AND leased_by IN ({marks(len(tokens))}) "
        f"AND id IN ({marks(len(ids))}){lock}) RETURNING id",
        (dialect.ts(now + timedelta(seconds=lease_seconds)), dialect.ts(now), *tokens, *ids),
    )
    return {int(job_id) for (job_id,) in result}


async def holds(*, conn: AsyncConnection, lease: Lease) -> bool:
    return await run_plan(conn, holds_plan(dialect_of(conn), lease))


def holds_plan(dialect: Dialect, lease: Lease) -> Plan[bool]:
    """Whether `lease` still holds its job; on PostgreSQL the row stays locked until commit,
    so the lease cannot lapse to another worker between this check and the caller's writes."""
    lock = " FOR UPDATE" if dialect.postgres else ""
    found = yield (
        f"SELECT 1 FROM jobs WHERE id = ? AND leased_by = ? AND status = 'running'{lock}",
        (lease.id, lease.token),
    )
    return bool(found)


async def finish(
    *,
    conn: AsyncConnection,
    lease: Lease,
    status: JobStatus = JobStatus.DONE,
    error: str | None = None,
) -> bool:
    return await run_plan(conn, settle_plan(dialect_of(conn), lease, status=status, error=error))


async def retry_later(
    *, conn: AsyncConnection, lease: Lease, run_at: datetime, error: str | None
) -> bool:
    return await run_plan(
        conn,
        settle_plan(dialect_of(conn), lease, status=JobStatus.QUEUED, error=error, run_at=run_at),
    )


async def requeue(*, conn: AsyncConnection, lease: Lease) -> bool:
    """Put a job back without counting the attempt (its input changed while it ran)."""
    return await run_plan(
        conn, settle_plan(dialect_of(conn), lease, status=JobStatus.QUEUED, uncount=True)
    )


def settle_plan(
    dialect: Dialect,
    lease: Lease,
    *,
    status: JobStatus = JobStatus.DONE,
    error: str | None = None,
    run_at: datetime | None = None,
    uncount: bool = False,
) -> Plan[bool]:
    """Finish, retry or requeue a job this lease holds; False when the lease no longer holds.
    `uncount` puts it back without counting the attempt (its input changed while it ran)."""
    sets = ["status = ?", "lease_until = NULL", "leased_by = NULL", "updated_at = ?"]
    params: list[object] = [status.value, dialect.ts(utcnow())]
    if error is not None:
        sets.append("last_error = ?")
        params.append(error[:2000])
    if run_at is not None:
        sets.append("run_at = ?")
        params.append(dialect.ts(run_at))
    if uncount:
        sets.append("attempts = attempts - 1")
    found = yield (
        f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND leased_by = ? RETURNING id",
        (*params, lease.id, lease.token),
    )
    return bool(found)


def purge_plan(
    dialect: Dialect, kinds: Sequence[str], finished_before: datetime, limit: int = 1000
) -> Plan[int]:
    """Delete up to `limit` jobs of `kinds` done before `finished_before`; how many went.
    Failed jobs stay (they are what someone looks into); a done job is only its outcome's
    echo, and nothing is deduplicated against it."""
    skip_locked = " FOR UPDATE SKIP LOCKED" if dialect.postgres else ""
    stamp = dialect.ts(finished_before)
    # `run_at` first, for the lane index: a job finishes after it falls due.
    gone = yield (
        "DELETE FROM jobs WHERE id IN ("
        f"SELECT id FROM jobs WHERE kind IN ({marks(len(kinds))}) AND status = 'done' "
        f"AND run_at < ? AND updated_at < ? LIMIT ?{skip_locked}) RETURNING id",
        (*kinds, stamp, stamp, limit),
    )
    return len(gone)


async def list_jobs(*, session: AsyncSession, key: str | None = None) -> list[Job]:
    statement = select(Job).order_by(col(Job.id))
    if key is not None:
        statement = statement.where(Job.key == key)
    result = await session.exec(statement)
    return list(result)


def _lease(row: Any, token: str) -> Lease:
    job_id, kind, key, payload, attempts, max_attempts, last_error = row
    return Lease(
        id=int(job_id),
        kind=kind,
        key=key,
        payload=parse_json(payload) or {},
        attempts=int(attempts),
        max_attempts=int(max_attempts),
        last_error=last_error,
        token=token,
    )


def cancel_queued_plan(dialect: Dialect, key: str) -> Plan[bool]:
    """Finish a job that has not started (its work was called off); False when none waits."""
    done = yield (
        "UPDATE jobs SET status = 'done', last_error = 'canceled', updated_at = ? "
        "WHERE key = ? AND status = 'queued' RETURNING id",
        (dialect.ts(utcnow()), key),
    )
    return bool(done)
