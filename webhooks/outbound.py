"""The HTTP client for requests to URLs businesses give us (webhooks, status callbacks).

Such a URL is whatever an API caller typed, so by default it may only reach public addresses:
the resolver drops loopback, private, link-local and other non-global addresses, so neither a
name nor a redirect nor a DNS answer changed after the URL was checked can point a request at
the service's own network. `SMSAGENT_CALLBACKS_ALLOW_PRIVATE=true` lifts that (an office's
systems on a private network, or tests on loopback).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from agent.hooks import PrivateAddress
from agent.settings import Settings


class PublicResolver(AbstractResolver):
    """Resolves as usual, keeping only global addresses."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise PrivateAddress(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def callback_session(settings: Settings, **options: Any) -> aiohttp.ClientSession:
    """A client session for business-given URLs, guarded unless private ones are allowed."""
    if settings.callbacks_allow_private:
        return aiohttp.ClientSession(**options)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=PublicResolver()), **options
    )
