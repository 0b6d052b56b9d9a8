"""Provider webhooks behind one door.

Each provider's edge is a `Carrier`: it checks that a delivery is genuinely the provider's
(`check`, from the delivery alone, so a kept one can be checked again later) and acts on a
genuine one (`process`: accept a text, record a status). A delivery that fails its check is
answered 403 *and* kept whole in quarantine, never processed: a misconfigured URL or secret
loses nothing, and `smsagent quarantine replay` processes it once the configuration is fixed
(the provider's own message id keeps a replay from doubling anything).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import BaseModel, ValidationError

from agent.deps import Deps
from agent.phones import InvalidPhoneNumber, normalize_phone
from storage import quarantine
from storage.types import utcnow
from webhooks.errors import HttpError, validation_details
from webhooks.keys import DEPS
from webhooks.routing import Handler

log = logging.getLogger("smsagent.webhooks")

# Never kept: credentials of the caller, not part of what the provider signed.
_DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Delivery:
    """A webhook request as it arrived: enough to check and process it again later."""

    provider: str
    method: str
    # The path and query it arrived on (the public URL is the configuration's, not the request's).
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    received_at: datetime = field(default_factory=utcnow)
    remote: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @cached_property
    def form(self) -> MultiDictProxy[str]:
        """The body as an `application/x-www-form-urlencoded` form (parsed once: the check and
        the processing both read it)."""
        pairs = parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return MultiDictProxy(MultiDict(pairs))

    @cached_property
    def query(self) -> MultiDictProxy[str]:
        _, _, query = self.path.partition("?")
        return MultiDictProxy(MultiDict(parse_qsl(query, keep_blank_values=True)))

    @property
    def route(self) -> str:
        return self.path.partition("?")[0]


class Carrier(Protocol):
    name: str

    async def check(self, deps: Deps, delivery: Delivery) -> str | None:
        """Why the delivery is not the provider's (a bad or stale signature); None: it is.
        Time windows are measured from `delivery.received_at`."""
        ...

    async def process(self, deps: Deps, delivery: Delivery) -> web.Response:
        """Act on a genuine delivery. Bad content raises `HttpError` (4xx), never quarantined:
        the provider sent it, and a replay would not change it."""
        ...


def carrier_handler(carrier: Carrier) -> Handler:
    """The aiohttp handler for a carrier's webhook route."""

    async def handle(request: web.Request) -> web.Response:
        deps = request.app[DEPS]
        delivery = Delivery(
            provider=carrier.name,
            method=request.method,
            path=request.path_qs,
            headers={
                name.lower(): value
                for name, value in request.headers.items()
                if name.lower() not in _DROPPED_HEADERS
            },
            body=await request.read(),
            remote=request.remote,
        )
        reason = await carrier.check(deps, delivery)
        if reason is not None:
            kept = await keep(deps, delivery, reason)
            raise HttpError(
                403,
                "invalid_signature",
                f"{reason}; the request is kept in quarantine as {kept}",
                details={"quarantine_id": kept},
            )
        return await carrier.process(deps, delivery)

    return handle


async def keep(deps: Deps, delivery: Delivery, reason: str) -> str:
    async with deps.sessions() as session, session.begin():
        kept = await quarantine.keep(
            session=session,
            provider=delivery.provider,
            method=delivery.method,
            path=delivery.path,
            headers=delivery.headers,
            body=delivery.body,
            reason=reason,
            remote=delivery.remote,
            received_at=delivery.received_at,
            limit=deps.settings.quarantine_keep,
        )
    log.warning(
        "webhook.quarantined provider=%s path=%s quarantine_id=%s reason=%s",
        delivery.provider,
        delivery.route,
        kept,
        reason,
    )
    return kept


def forwarded_urls(delivery: Delivery, *, trust: bool) -> list[str]:
    """The public URLs a proxy says the provider called (X-Forwarded-* or Forwarded), when
    such headers are trusted; the configured public URL is always tried first, elsewhere."""
    if not trust:
        return []
    proto = delivery.header("x-forwarded-proto")
    host = delivery.header("x-forwarded-host")
    if forwarded := delivery.header("forwarded"):
        first = forwarded.split(",", 1)[0]
        for part in first.split(";"):
            key, _, value = part.strip().partition("=")
            value = value.strip('"')
            if key.lower() == "proto":
                proto = proto or value
            elif key.lower() == "host":
                host = host or value
    host = host or delivery.header("host")
    if not proto or not host:
        return []
    prefix = (delivery.header("x-forwarded-prefix") or "").rstrip("/")
    proto, host = proto.split(",", 1)[0].strip(), host.split(",", 1)[0].strip()
    return [f"{proto}://{host}{prefix}{delivery.path}"]


def phone_field(value: str | None, name: str) -> str:
    """A number from a provider's payload in E.164, or a 400 naming the field."""
    if not value:
        raise HttpError(400, "missing_fields", f"missing {name}", details=[name])
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise HttpError(400, "invalid_phone", f"{name}: {exc}") from exc


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], payload: object) -> M:
    """`payload` as `model`, or the 422 the error middleware would give, raised as an
    `HttpError` so a replay from quarantine (which has no middleware) answers the same."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        details = validation_details(exc)
        fields = ", ".join(d["field"] for d in details)
        raise HttpError(
            422, "validation_error", f"invalid fields: {fields}", details=details
        ) from exc
