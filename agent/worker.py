"""The worker: takes due jobs from the database and runs them, a few at a time.

Jobs come from the database, never from memory, so a restart loses none: a job whose worker died
is taken again once its lease lapses. While a job runs its lease is renewed; a handler that
raises is retried with backoff, and one out of attempts is handed to its `exhausted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from agent.deps import Nudge
from storage import jobs
from storage.engine import SessionFactory
from storage.models import Job, JobStatus
from storage.types import utcnow

log = logging.getLogger("smsagent.worker")


class JobHandler(Protocol):
    async def run(self, job: Job, lease: str) -> None: ...

    async def exhausted(self, job: Job, lease: str, error: str) -> None: ...


class Worker:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        handlers: Mapping[str, JobHandler],
        nudge: Nudge,
        concurrency: int,
        lease_seconds: float,
        poll_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._handlers = handlers
        self._nudge = nudge
        self._slots = asyncio.Semaphore(concurrency)
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        log.info("worker.started worker_id=%s", self.worker_id)
        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                job = await self._lease()
            except Exception:
                self._slots.release()
                log.exception("worker.lease_failed")
                await self._idle(self._poll_seconds)
                continue
            if job is None:
                self._slots.release()
                await self._idle(await self._until_next_due())
                continue
            task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Let running jobs finish for a moment; any cut short is taken again after its lease."""
        self._stopping.set()
        self._nudge()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _lease(self) -> Job | None:
        async with self._sessions() as session, session.begin():
            return await jobs.lease_next(
                session=session, worker_id=self.worker_id, lease_seconds=self._lease_seconds
            )

    async def _until_next_due(self) -> float:
        async with self._sessions() as session:
            due = await jobs.next_due_at(session=session)
        if due is None:
            return self._poll_seconds
        return max(0.0, min(self._poll_seconds, (due - utcnow()).total_seconds()))

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.event.wait(), timeout=seconds)
        self._nudge.event.clear()

    async def _execute(self, job: Job) -> None:
        lease = job.leased_by or ""
        heartbeat = asyncio.create_task(self._heartbeat(job, lease))
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                await self._settle_unknown(job, lease)
            elif job.attempts > job.max_attempts:
                await handler.exhausted(job, lease, job.last_error or "out of attempts")
            else:
                await self._run(handler, job, lease)
        except Exception:
            log.exception("worker.job_crashed job_id=%s kind=%s", job.id, job.kind)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._slots.release()

    async def _run(self, handler: JobHandler, job: Job, lease: str) -> None:
        try:
            await handler.run(job, lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "worker.job_failed job_id=%s kind=%s attempt=%d error=%s",
                job.id,
                job.kind,
                job.attempts,
                type(exc).__name__,
            )
            if job.attempts >= job.max_attempts:
                await handler.exhausted(job, lease, error)
                return
            delay = min(2.0**job.attempts, 300.0)
            async with self._sessions() as session, session.begin():
                await jobs.retry_later(
                    session=session,
                    job_id=jobs.job_id(job),
                    lease_token=lease,
                    run_at=utcnow() + timedelta(seconds=delay),
                    error=error,
                )
            self._nudge()

    async def _heartbeat(self, job: Job, lease: str) -> None:
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._sessions() as session, session.begin():
                    held = await jobs.extend_lease(
                        session=session,
                        job_id=jobs.job_id(job),
                        lease_token=lease,
                        lease_seconds=self._lease_seconds,
                    )
            except Exception:
                log.exception("worker.heartbeat_failed job_id=%s", job.id)
                continue
            if not held:
                return

    async def _settle_unknown(self, job: Job, lease: str) -> None:
        log.error("worker.unknown_kind job_id=%s kind=%s", job.id, job.kind)
        async with self._sessions() as session, session.begin():
            await jobs.finish(
                session=session,
                job_id=jobs.job_id(job),
                lease_token=lease,
                status=JobStatus.FAILED,
                error=f"no handler for {job.kind!r}",
            )
