"""What every provider's send-API stub shares: serving on loopback, the requests and messages
it took, and waiting for them."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from aiohttp import web

from tests.fakes.handset import SentSms


class LoopbackStub:
    """A provider API on 127.0.0.1 (`port=0` picks a free port). Subclasses add their routes
    in `routes`, record into `requests` / `messages`, and call `taken()` after each request."""

    label = "stub"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        # Every request to the send API, accepted or not, in order.
        self.requests: list[dict[str, Any]] = []
        # Each accepted message.
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, what the service's API URL setting takes."""
        if self._runner is None:
            raise RuntimeError(f"{self.label} is not started")
        return f"http://{self.host}:{self.port}"

    def as_sent(self, message: dict[str, Any]) -> SentSms:
        """An accepted message as the end-to-end test sees it (tests/fakes/handset.py)."""
        raise NotImplementedError

    async def sent(self, n: int, *, within: float = 10.0) -> list[SentSms]:
        """The first `n` accepted messages, waiting up to `within` seconds for them."""
        await self.wait_for_messages(n, timeout=within)
        return [self.as_sent(m) for m in self.messages[:n]]

    def taken(self) -> None:
        """A request was recorded: wake whoever waits for messages."""
        self._changed.set()

    async def wait_for_messages(self, n: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until at least `n` messages were accepted."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.messages) < n:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            statuses = [r.get("status") for r in self.requests]
            raise AssertionError(
                f"{self.label}: expected at least {n} accepted message(s) within {timeout}s, "
                f"got {len(self.messages)} (request statuses: {statuses})"
            ) from None
