"""A route of the service: what mounts it and what `/openapi.json` says of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How a route authenticates: the workspace's API key as a Bearer token, the Avaamo channel uuid
# in the path, a team member's `auth_id` + `auth_secret` parameters (the inbox API), a
# provider's signature (webhooks/carriers.py), or nothing.
Auth = Literal["bearer", "avaamo_channel", "avochato", "provider_signature", "none"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth = "bearer"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # Status -> the model of its JSON body (None: no body, or not JSON).
    responses: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)
    # Documented for integrators; provider webhooks and the console are left out of the spec.
    public: bool = True
    # Request headers besides Authorization: name -> (required, what it is).
    headers: Mapping[str, tuple[bool, str]] = field(default_factory=dict)


RETRY_SAFE = {
    "Idempotency-Key": (
        False,
        "any unique string (1-255 characters): a retry with it gets the first answer again",
    )
}
