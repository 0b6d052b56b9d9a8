"""The durable job queue: jobs live in the database, are leased, retried and recovered.

A job is leased with a token (`leased_by`); every later write names that token, so a worker whose
lease ran out (and whose job another worker took over) can no longer change it. Keys are unique
among unfinished jobs: enqueuing a key that is already waiting or running folds into that job.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ACTIVE_JOB_PREDICATE, Job, JobStatus
from storage.types import upsert_insert, utcnow

# Written out, not bound: PostgreSQL matches ON CONFLICT to the partial index by its predicate,
# and with bound parameters that match fails once a prepared statement goes to a generic plan
# (from its sixth execution on).
_ACTIVE_WHERE = text(ACTIVE_JOB_PREDICATE)


async def enqueue(
    *,
    session: AsyncSession,
    kind: str,
    key: str,
    payload: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 6,
    fold: bool = False,
) -> None:
    """Add a job unless one with `key` is unfinished.

    With `fold`, an unfinished job with the key is pushed back to `run_at` instead: a text that
    arrives during the quiet window (or while its turn is running) moves the turn, not adds one.
    """
    now = utcnow()
    values = {
        "kind": kind,
        "key": key,
        "payload": payload or {},
        "status": JobStatus.QUEUED,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "created_at": now,
        "updated_at": now,
    }
    stmt = upsert_insert(session, Job).values(**values)
    if fold:
        statement = stmt.on_conflict_do_update(
            index_elements=["key"],
            index_where=_ACTIVE_WHERE,
            set_={"run_at": stmt.excluded.run_at, "updated_at": now},
        )
    else:
        statement = stmt.on_conflict_do_nothing(index_elements=["key"], index_where=_ACTIVE_WHERE)
    await session.exec(statement)


async def lease_next(*, session: AsyncSession, worker_id: str, lease_seconds: float) -> Job | None:
    """Take the most overdue job: a queued one that is due, or a running one whose lease lapsed."""
    now = utcnow()
    candidate = (
        select(Job.id)
        .where(
            or_(
                (col(Job.status) == JobStatus.QUEUED) & (col(Job.run_at) <= now),
                (col(Job.status) == JobStatus.RUNNING) & (col(Job.lease_until) < now),
            )
        )
        .order_by(col(Job.run_at))
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Job)
        .where(col(Job.id) == candidate)
        .values(
            status=JobStatus.RUNNING,
            attempts=col(Job.attempts) + 1,
            lease_until=now + timedelta(seconds=lease_seconds),
            leased_by=f"{worker_id}:{secrets.token_hex(6)}",
            updated_at=now,
        )
        .returning(Job)
    )
    result = await session.exec(statement)
    job: Job | None = result.scalar_one_or_none()
    return job


async def extend_lease(
    *, session: AsyncSession, job_id: int, lease_token: str, lease_seconds: float
) -> bool:
    now = utcnow()
    result = await session.exec(
        update(Job)
        .where(_held(job_id, lease_token))
        .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return _changed(result)


async def lock_leased_job(*, session: AsyncSession, job_id: int, lease_token: str) -> Job | None:
    """The job, row-locked, if this lease still holds it; None when the lease was lost."""
    result = await session.exec(select(Job).where(_held(job_id, lease_token)).with_for_update())
    return result.first()


async def finish(
    *,
    session: AsyncSession,
    job_id: int,
    lease_token: str,
    status: JobStatus = JobStatus.DONE,
    error: str | None = None,
) -> bool:
    return await _settle(
        session=session, job_id=job_id, lease_token=lease_token, status=status, error=error
    )


async def retry_later(
    *, session: AsyncSession, job_id: int, lease_token: str, run_at: datetime, error: str | None
) -> bool:
    return await _settle(
        session=session,
        job_id=job_id,
        lease_token=lease_token,
        status=JobStatus.QUEUED,
        error=error,
        run_at=run_at,
    )


async def requeue(*, session: AsyncSession, job_id: int, lease_token: str) -> bool:
    """Put a job back without counting the attempt (its input changed while it ran)."""
    now = utcnow()
    result = await session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.leased_by) == lease_token)
        .values(
            status=JobStatus.QUEUED,
            attempts=col(Job.attempts) - 1,
            lease_until=None,
            leased_by=None,
            updated_at=now,
        )
    )
    return _changed(result)


async def _settle(
    *,
    session: AsyncSession,
    job_id: int,
    lease_token: str,
    status: JobStatus,
    error: str | None,
    run_at: datetime | None = None,
) -> bool:
    values: dict[str, Any] = {
        "status": status,
        "lease_until": None,
        "leased_by": None,
        "updated_at": utcnow(),
    }
    if error is not None:
        values["last_error"] = error[:2000]
    if run_at is not None:
        values["run_at"] = run_at
    result = await session.exec(
        update(Job).where(col(Job.id) == job_id, col(Job.leased_by) == lease_token).values(**values)
    )
    return _changed(result)


async def next_due_at(*, session: AsyncSession) -> datetime | None:
    """When the earliest waiting job falls due (or a running one's lease lapses)."""
    queued = await session.exec(
        select(func.min(Job.run_at)).where(col(Job.status) == JobStatus.QUEUED)
    )
    lapsing = await session.exec(
        select(func.min(Job.lease_until)).where(col(Job.status) == JobStatus.RUNNING)
    )
    times = [t for t in (queued.first(), lapsing.first()) if t is not None]
    return min(times) if times else None


async def list_jobs(*, session: AsyncSession, key: str | None = None) -> list[Job]:
    statement = select(Job).order_by(col(Job.id))
    if key is not None:
        statement = statement.where(Job.key == key)
    result = await session.exec(statement)
    return list(result)


def _held(job_id: int, lease_token: str) -> Any:
    return (
        (col(Job.id) == job_id)
        & (col(Job.leased_by) == lease_token)
        & (col(Job.status) == JobStatus.RUNNING)
    )


def _changed(result: Any) -> bool:
    return bool(result.rowcount)


def job_id(job: Job) -> int:
    """A stored job's id (only unsaved rows lack one)."""
    assert job.id is not None
    return job.id
