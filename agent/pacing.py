"""Turns at work, a few at a time, in order.

A turn is mostly waiting on the model; the rest is our CPU (its snapshot, the prompt, LangChain
before and after the call, the commit). When a thousand customers text at once, every turn would
otherwise get a slice of the process in turn, and all of them would finish together at the end
of the rush. Instead a turn holds one of a few places while it works and gives it up while the
model thinks; a turn coming back from the model gets the next free place before any new turn
starts. Turns so finish in the order they began, and the first customers are answered first.

A place is taken when a turn starts and when the model answers it, and given up when a request
to the model goes out (hooks on the model's HTTP client) and when the turn ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextvars import ContextVar
from enum import IntEnum

import httpx


class Priority(IntEnum):
    RESUME = 0  # back from the model: closest to done
    START = 1


class Places:
    """`count` places; a quarter of them kept for starting turns whenever any wait, so new turns
    keep going to the model (hiding its latency) while those back from it finish first."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._for_starts = max(1, count // 4)
        self._starting = 0  # places held by turns that have not asked the model yet
        self._waiting: dict[Priority, deque[asyncio.Future[None]]] = {p: deque() for p in Priority}

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a place for the turn running in this context until it ends or waits on the model."""
        held = _Holder(self)
        await held.enter(Priority.START)
        token = _HOLDER.set(held)
        try:
            yield
        finally:
            _HOLDER.reset(token)
            held.leave()

    async def _take(self, priority: Priority) -> None:
        if self._free > 0 and not any(self._waiting.values()):
            self._free -= 1
            self._starting += priority == Priority.START
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._give(priority)  # handed a place just as it was cancelled: pass it on
            raise

    def _give(self, priority: Priority) -> None:
        self._starting -= priority == Priority.START
        order = (Priority.RESUME, Priority.START)
        if self._starting < self._for_starts:
            order = (Priority.START, Priority.RESUME)
        for next_priority in order:
            waiting = self._waiting[next_priority]
            while waiting:
                granted = waiting.popleft()
                if not granted.done():
                    granted.set_result(None)
                    self._starting += next_priority == Priority.START
                    return
        self._free += 1


class _Holder:
    def __init__(self, places: Places) -> None:
        self._places = places
        self._holding: Priority | None = None

    async def enter(self, priority: Priority) -> None:
        if self._holding is None:
            await self._places._take(priority)
            self._holding = priority

    def leave(self) -> None:
        if self._holding is not None:
            held, self._holding = self._holding, None
            self._places._give(held)


# The running turn's holder; the model's requests run in tasks that inherit it.
_HOLDER: ContextVar[_Holder | None] = ContextVar("smsagent_turn_place", default=None)


def wait_elsewhere() -> None:
    """The running turn is about to wait (on the model, or for its turn at it)."""
    held = _HOLDER.get()
    if held is not None:
        held.leave()


async def back_to_work() -> None:
    held = _HOLDER.get()
    if held is not None:
        await held.enter(Priority.RESUME)


async def on_model_request(request: httpx.Request) -> None:
    wait_elsewhere()


async def on_model_response(response: httpx.Response) -> None:
    # A failed call is retried after a backoff or ends the turn's thinking: neither is worth a
    # place, and holding one through a backoff would stall the turns behind it.
    if response.status_code < 400:
        await back_to_work()
