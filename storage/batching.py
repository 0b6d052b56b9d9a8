"""Group commit: many concurrent writers, one transaction, each answered once its row is durable.

Callers `submit` an item and wait. One flusher takes everything waiting (up to `max_batch`),
writes it with the batch function in one transaction, commits, then answers each caller. While
a batch is being written the next one gathers, so under load batches grow by themselves and a
lone item waits for no one (an optional linger trades its latency for fewer transactions).

A batch that fails is not the end of its items: each is written again in its own transaction,
so a bad item fails only its own caller and the rest commit. Nothing is answered before its
commit, so a crash loses only unanswered items, which their senders retry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.raw import Dialect, Plan, commit_plan

log = logging.getLogger("smsagent.batching")

T = TypeVar("T")
R = TypeVar("R")

# The statements that write a batch (a `storage.raw.Plan`), one result per item.
BatchWrite = Callable[[Dialect, Sequence[T]], Plan[list[R]]]


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        engine: AsyncEngine,
        write: BatchWrite[T, R],
        *,
        name: str,
        max_batch: int = 200,
        linger_seconds: float = 0.0,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._dialect = Dialect(engine.dialect.name)
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._after_commit = after_commit
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._rush_seen = -1e9
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def busy(
        self,
        *,
        per_second: float = 200.0,
        window_seconds: float = 0.25,
        linger_seconds: float = 1.0,
    ) -> bool:
        """Whether items arrive faster than `per_second` (counted over a sliding window), or did
        less than `linger_seconds` ago: a rush does not end with one quiet moment."""
        now = asyncio.get_running_loop().time()
        recent = self._recent
        while recent and recent[0][0] < now - window_seconds:
            recent.popleft()
        if len(self._pending) + sum(n for _, n in recent) > per_second * window_seconds:
            self._rush_seen = now
        return now - self._rush_seen < linger_seconds

    async def submit(self, item: T) -> R:
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self._name} writer is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self._name}")

    async def stop(self) -> None:
        """Write what is waiting, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while self._pending:
            await self._flush(self._take())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if self._linger and len(self._pending) < self._max_batch:
                    await asyncio.sleep(self._linger)
                await self._flush(self._take())

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch, self._pending = (
            self._pending[: self._max_batch],
            self._pending[self._max_batch :],
        )
        return batch

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, future) for item, future in batch if not future.done()]
        if not live:
            return
        try:
            results = await self._transaction([item for item, _ in live])
        except Exception as exc:
            if len(live) == 1:
                await self._alone(*live[0], first_error=exc)
            else:
                log.warning(
                    "batch.split writer=%s size=%d error=%s", self._name, len(live), _kind(exc)
                )
                for item, future in live:
                    await self._alone(item, future)
            return
        self.batches += 1
        self.items += len(live)
        self._recent.append((asyncio.get_running_loop().time(), len(live)))
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._after_commit is not None:
            self._after_commit()

    async def _alone(
        self, item: T, future: asyncio.Future[R], *, first_error: Exception | None = None
    ) -> None:
        """Write one item on its own; one more try if it lost a race with another writer."""
        error = first_error
        for _ in range(1 if first_error is not None else 2):
            try:
                [result] = await self._transaction([item])
            except Exception as exc:
                error = exc
                continue
            self.batches += 1
            self.items += 1
            if not future.done():
                future.set_result(result)
            if self._after_commit is not None:
                self._after_commit()
            return
        assert error is not None
        log.error("batch.item_failed writer=%s error=%s", self._name, _kind(error))
        if not future.done():
            future.set_exception(error)

    async def _transaction(self, items: Sequence[T]) -> list[R]:
        return await commit_plan(self._engine, self._write(self._dialect, items), urgent=True)


def _kind(exc: BaseException) -> str:
    # The class name only: driver messages can quote the values (bodies, phone numbers).
    return type(exc).__name__
