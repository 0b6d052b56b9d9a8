"""PostgreSQL LISTEN: a job enqueued by any process wakes idle workers in every process.

Enqueues NOTIFY inside their transaction, so the wake-up arrives once the job is visible. The
listener holds one connection of its own and reconnects if it drops; a missed notification
costs only the worker's poll interval, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from storage.inbound import JOBS_CHANNEL

log = logging.getLogger("smsagent.notify")


def plain_dsn(url: URL) -> str:
    """The asyncpg DSN for a SQLAlchemy `postgresql+asyncpg://` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_for_jobs(
    dsn: str,
    on_notify: Callable[[str], None],
    stop: asyncio.Event,
    *,
    retry_seconds: float = 1.0,
) -> None:
    """Call `on_notify(kind)` for every job enqueued anywhere, until `stop` is set.

    `stop`, not only cancellation, ends it: a cancellation that lands while connecting can be
    lost inside the driver's own timeout handling."""
    while not stop.is_set():
        closed = asyncio.Event()
        try:
            conn: Any = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("notify.connect_failed error=%s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=retry_seconds)
            continue
        try:
            conn.add_termination_listener(lambda _conn, done=closed: done.set())
            await conn.add_listener(
                JOBS_CHANNEL, lambda _conn, _pid, _channel, payload: on_notify(str(payload))
            )
            log.info("notify.listening channel=%s", JOBS_CHANNEL)
            # A wake-up may have been missed while (re)connecting.
            on_notify("")
            ended = asyncio.create_task(stop.wait())
            lost = asyncio.create_task(closed.wait())
            try:
                await asyncio.wait({ended, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                lost.cancel()
            if closed.is_set():
                log.warning("notify.connection_lost")
        finally:
            if not conn.is_closed():
                await conn.close(timeout=2)
