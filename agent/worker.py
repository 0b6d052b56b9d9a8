"""The worker: leases due jobs from the database in batches and runs them, lane by lane.

Jobs come from the database, never from memory, so a restart loses none: a job whose worker died
is taken again once its lease lapses. Each lane (turns, sends, webhooks to the business) leases
only its own kinds and has its own bound on jobs in flight, so a reply ready to go never waits
behind turns waiting on the model, nor behind a slow webhook endpoint. Turns are mostly waiting
on the network, so a lane holds hundreds at once; what bounds them is memory and the model's own
limit, set where the model is called. While texts arrive faster than a busy clinic's rush
(`yield_to`), each lane starts only a trickle of new jobs: the webhooks get the process, and
nothing waiting starves.

One heartbeat renews every lease this worker holds in one statement. A handler that raises is
retried with backoff, and one out of attempts is handed to its `exhausted`. Jobs done a while
ago are swept away now and then; failed ones stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from agent.deps import Nudge
from storage import idempotency, jobs
from storage.jobs import Lease
from storage.models import JobStatus
from storage.raw import Dialect, commit_plan
from storage.types import utcnow

log = logging.getLogger("smsagent.worker")

MIN_IDLE_SECONDS = 0.05


class JobHandler(Protocol):
    async def run(self, job: Lease) -> None: ...

    async def exhausted(self, job: Lease, error: str) -> None: ...


@dataclass(frozen=True)
class LaneSpec:
    name: str
    kinds: tuple[str, ...]
    concurrency: int  # jobs in flight at most
    batch: int  # jobs leased per statement at most


class Worker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        handlers: Mapping[str, JobHandler],
        lanes: Sequence[LaneSpec],
        nudge: Nudge,
        lease_seconds: float,
        poll_seconds: float,
        yield_to: Callable[[], bool] | None = None,
        trickle_per_second: float = 20.0,
        keep_done_seconds: float | None = None,
        sweep_seconds: float = 300.0,
    ) -> None:
        self._engine = engine
        self._dialect = Dialect(engine.dialect.name)
        self._yield_to = yield_to
        self._trickle = trickle_per_second
        self._handlers = handlers
        self._lanes = [_Lane(spec, nudge) for spec in lanes]
        self._by_kind = {kind: lane for lane in self._lanes for kind in lane.spec.kinds}
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._stopping = asyncio.Event()
        self._nudge = nudge
        self._keep_done = keep_done_seconds
        self._sweep_seconds = sweep_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        log.info(
            "worker.started worker_id=%s lanes=%s",
            self.worker_id,
            ",".join(f"{lane.spec.name}:{lane.spec.concurrency}" for lane in self._lanes),
        )
        loops = [asyncio.create_task(self._lane_loop(lane)) for lane in self._lanes]
        loops.append(asyncio.create_task(self._heartbeat()))
        if self._keep_done is not None:
            loops.append(asyncio.create_task(self._sweep(self._keep_done)))
        try:
            # The loops end by themselves once stopping: cancelling one in the middle of a query
            # would throw its connection away.
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    def run_now(self, lease: Lease) -> None:
        """Run a job that was enqueued already leased to this worker (a reply just composed).
        While stopping it is left alone: its lease lapses and a running worker takes it."""
        if not self._stopping.is_set():
            self._start(self._by_kind[lease.kind], lease)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop leasing, and let running jobs finish for a moment; any cut short is taken again
        after its lease lapses."""
        self._stopping.set()
        self._nudge()
        for lane in self._lanes:
            lane.wake_for_stop()
        running = {task for lane in self._lanes for task in lane.tasks}
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _lane_loop(self, lane: _Lane) -> None:
        while not self._stopping.is_set():
            free = lane.spec.concurrency - len(lane.tasks)
            if free <= 0:
                await lane.wait_for_room()
                continue
            busy = self._yield_to is not None and self._yield_to()
            if busy:
                # Texts are pouring in: accepting them comes first (providers time out and
                # retry), so this lane starts a trickle of jobs until the rush is over.
                free = 1
            try:
                leased, due = await commit_plan(
                    self._engine,
                    jobs.lease_plan(
                        self._dialect,
                        lane.spec.kinds,
                        min(free, lane.spec.batch),
                        self.worker_id,
                        self._lease_seconds,
                    ),
                )
            except Exception:
                log.exception("worker.lease_failed lane=%s", lane.spec.name)
                await lane.idle(self._poll_seconds)
                continue
            for lease in leased:
                self._start(lane, lease)
            if not leased:
                await lane.idle(self._until(due))
            elif busy:
                await asyncio.sleep(1 / self._trickle)

    def _start(self, lane: _Lane, lease: Lease) -> None:
        task = asyncio.create_task(self._execute(lease), name=f"job-{lease.id}")
        lane.add(task, lease)

    def _until(self, due: datetime | None) -> float:
        if due is None:
            return self._poll_seconds
        # Not sooner than a few milliseconds: a thread texting steadily keeps pushing its turn
        # back, and chasing that moving target would spin. Nudges still wake the lane at once.
        return max(MIN_IDLE_SECONDS, min(self._poll_seconds, (due - utcnow()).total_seconds()))

    async def _execute(self, job: Lease) -> None:
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                await self._settle_unknown(job)
            elif job.attempts > job.max_attempts:
                await handler.exhausted(job, job.last_error or "out of attempts")
            else:
                await self._run(handler, job)
        except Exception:
            log.exception("worker.job_crashed job_id=%s kind=%s", job.id, job.kind)

    async def _run(self, handler: JobHandler, job: Lease) -> None:
        try:
            await handler.run(job)
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
                await handler.exhausted(job, error)
                return
            delay = min(2.0**job.attempts, 300.0)
            async with self._engine.begin() as conn:
                await jobs.retry_later(
                    conn=conn, lease=job, run_at=utcnow() + timedelta(seconds=delay), error=error
                )
            self._nudge()

    async def _heartbeat(self) -> None:
        interval = self._lease_seconds / 3
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            if self._stopping.is_set():
                return
            held = [lease for lane in self._lanes for lease in lane.leases.values()]
            if not held:
                continue
            try:
                async with self._engine.begin() as conn:
                    kept = await jobs.extend_leases(
                        conn=conn, leases=held, lease_seconds=self._lease_seconds
                    )
            except Exception:
                log.exception("worker.heartbeat_failed leases=%d", len(held))
                continue
            lost = [lease.id for lease in held if lease.id not in kept]
            # A job may have settled between the snapshot and the renewal; only live ones count.
            still_running = {lease.id for lane in self._lanes for lease in lane.leases.values()}
            lost = [job_id for job_id in lost if job_id in still_running]
            if lost:
                log.warning("worker.leases_lost job_ids=%s", lost[:20])

    async def _sweep(self, keep_seconds: float) -> None:
        """Now and then, delete jobs done longer ago than `keep_seconds`, a chunk at a time
        (each its own short transaction, so webhooks never wait long behind it)."""
        kinds = sorted(self._by_kind)
        while not self._stopping.is_set():
            removed = 0
            try:
                while not self._stopping.is_set():
                    before = utcnow() - timedelta(seconds=keep_seconds)
                    gone = await commit_plan(
                        self._engine, jobs.purge_plan(self._dialect, kinds, before)
                    )
                    removed += gone
                    if gone < 1000:
                        break
                    await asyncio.sleep(0.05)
                # Idempotency keys past their day go the same way.
                await commit_plan(self._engine, idempotency.purge_plan(self._dialect))
            except Exception:
                log.exception("worker.sweep_failed")
            if removed:
                log.info("worker.swept done_jobs=%d", removed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._sweep_seconds)

    async def _settle_unknown(self, job: Lease) -> None:
        log.error("worker.unknown_kind job_id=%s kind=%s", job.id, job.kind)
        async with self._engine.begin() as conn:
            await jobs.finish(
                conn=conn, lease=job, status=JobStatus.FAILED, error=f"no handler for {job.kind!r}"
            )


class _Lane:
    """One lane's jobs in flight and its wake-ups."""

    def __init__(self, spec: LaneSpec, nudge: Nudge) -> None:
        self.spec = spec
        self.tasks: set[asyncio.Task[None]] = set()
        self.leases: dict[asyncio.Task[None], Lease] = {}
        self._wake = nudge.subscribe(spec.kinds)
        self._room = asyncio.Event()

    def add(self, task: asyncio.Task[None], lease: Lease) -> None:
        self.tasks.add(task)
        self.leases[task] = lease
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.leases.pop(task, None)
        self._room.set()

    async def wait_for_room(self) -> None:
        self._room.clear()
        if len(self.tasks) >= self.spec.concurrency:
            await self._room.wait()

    def wake_for_stop(self) -> None:
        self._room.set()
        self._wake.event.set()

    async def idle(self, seconds: float) -> None:
        wake = self._wake
        wake.looks_at = asyncio.get_running_loop().time() + seconds
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.event.wait(), timeout=seconds)
        finally:
            wake.looks_at = 0.0
        wake.event.clear()
