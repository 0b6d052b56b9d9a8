"""The generic signed gateway: any other carrier, or an SMS gateway of the business's own, over
one small JSON contract (the README's "Other providers" section is its reference).

Every request, both ways, is signed as the business webhooks are (`agent/hooks.py`)::

    Smsagent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>

keyed with the workspace's gateway secret (`smsagent workspaces gateway`; the default
workspace's is SMSAGENT_GATEWAY_SECRET). A request is refused when `t` lies more than
SMSAGENT_WEBHOOK_TOLERANCE_SECONDS from when it *arrived*, so a quarantined one is checked
again later with the same result.

The gateway posts to ``POST {public_url}/webhooks/gateway/{workspace_id}``:

``{"type": "message.received", "id", "from", "to", "text", "media": [{"url", "content_type"}]}``
    A customer's text. ``id`` is the gateway's (a retry with the same id stores nothing twice),
    ``to`` one of the workspace's numbers (else 422 ``number_not_in_workspace``), ``media`` at
    most 10 items. Answer: ``{"ok": true, "message_id": "msg_…", "duplicate": false}``.
``{"type": "message.status", "id", "status", "error_code", "error_message", "message_id"}``
    What became of a text we sent: ``id`` is the gateway's id for it (what it answered to
    ``message.send``), ``status`` one of ``sent``, ``delivered``, ``undelivered``, ``failed``;
    ``message_id`` (ours, the ``id`` of ``message.send``) is optional and lets a status that
    comes before the send's answer land. Answer: ``{"ok": true, "applied": true}``.

We post to the workspace's gateway URL:

``{"type": "message.send", "id": "msg_…", "from", "to", "text", "media_urls", "status_url"}``
    Answer 2xx ``{"id": "<the gateway's id>"}`` once it has the text. A 429 or 5xx (with
    ``Retry-After`` in seconds, if any) is retried; another 4xx is final, and
    ``{"error": {"code": "opted_out", "message"}}`` marks the recipient opted out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.delivery import record_delivery
from agent.deps import Deps
from agent.hooks import (
    SIGNATURE_HEADER,
    PrivateAddress,
    private_address,
    refuse_private_literal,
    sign,
    signature_problem,
)
from agent.inbound import InboundSms, accept_inbound
from agent.phones import mask_phone
from agent.providers import OutboundSms, ProviderError, SendResult
from agent.settings import Settings
from storage import messages
from storage.engine import SessionFactory
from storage.models import Message, MessageStatus
from storage.workspaces import get_workspace, sender_numbers
from webhooks.carriers import Delivery, phone_field, validated
from webhooks.errors import HttpError
from webhooks.sending import post, refused

log = logging.getLogger("smsagent.gateway")

PROVIDER = "gateway"
PATH_PREFIX = "/webhooks/gateway/"
ROUTE = PATH_PREFIX + "{workspace_id}"
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
MESSAGE_SEND = "message.send"
EVENT_TYPES = (MESSAGE_RECEIVED, MESSAGE_STATUS)
# What a gateway answers for a recipient who opted out at its end.
OPTED_OUT = "opted_out"
# Media items a text may carry (MMS carries at most 10).
MAX_MEDIA = 10
# A provider's id for a text is kept in a column of this size.
MAX_ID = 64
_WORKSPACE_ID_MAX = 40


# --- The contract's bodies ---------------------------------------------------------------------


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


class GatewayMedia(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=8, max_length=2000, description="Where the file can be fetched")
    content_type: str | None = Field(default=None, max_length=100, description="e.g. image/jpeg")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class MessageReceived(BaseModel):
    """A customer's text, as the gateway posts it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["message.received"]
    id: str = Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f]+$")
    from_: str = Field(alias="from", min_length=1, max_length=32)
    to: str = Field(min_length=1, max_length=32)
    text: str = Field(default="", max_length=10_000)
    media: list[GatewayMedia] = Field(default_factory=list, max_length=MAX_MEDIA)

    @model_validator(mode="after")
    def _not_empty(self) -> MessageReceived:
        if not self.text and not self.media:
            raise ValueError("a text needs text or media")
        return self


class MessageStatusReport(BaseModel):
    """What became of a text we sent, as the gateway reports it."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message.status"]
    id: str = Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f]+$")
    status: Literal["sent", "delivered", "undelivered", "failed"]
    error_code: str | None = Field(default=None, max_length=64)
    # Taken but neither kept nor logged: it may name the customer.
    error_message: str | None = Field(default=None, max_length=500)
    message_id: str | None = Field(default=None, max_length=40)


# --- Signatures ---------------------------------------------------------------------------------


# --- Each workspace's gateway, read through ---------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    workspace_id: str
    url: str | None
    secret: str | None
    numbers: frozenset[str]


class Gateways:
    """Each workspace's gateway URL, secret and numbers, read through to the database and kept
    for a few seconds: a text does not pay for a query, and a new secret (or a number) counts
    within `keep_seconds`."""

    def __init__(self, sessions: SessionFactory, *, keep_seconds: float = 10.0) -> None:
        self.sessions = sessions
        self._keep = keep_seconds
        self._known: dict[str, tuple[GatewayConfig | None, float]] = {}

    async def get(self, workspace_id: str) -> GatewayConfig | None:
        """The workspace's gateway; None when there is no such workspace."""
        now = time.monotonic()
        hit = self._known.get(workspace_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        config = await self._read(workspace_id)
        if len(self._known) > 10_000:
            self._known.clear()
        # An unknown workspace is looked up again sooner: it may be created any moment.
        self._known[workspace_id] = (config, now + (self._keep if config else min(self._keep, 2)))
        return config

    async def _read(self, workspace_id: str) -> GatewayConfig | None:
        if not workspace_id or len(workspace_id) > _WORKSPACE_ID_MAX:
            return None
        async with self.sessions() as session:
            workspace = await get_workspace(session=session, workspace_id=workspace_id)
            if workspace is None:
                return None
            numbers = await sender_numbers(session=session, workspace_id=workspace_id)
        return GatewayConfig(
            workspace_id=workspace_id,
            url=workspace.gateway_url,
            secret=workspace.gateway_secret,
            numbers=frozenset(n.number for n in numbers),
        )


def workspace_in(route: str) -> str | None:
    """The workspace id a gateway route names (`/webhooks/gateway/<id>`), if it names one."""
    if not route.startswith(PATH_PREFIX):
        return None
    workspace_id = route.removeprefix(PATH_PREFIX)
    return workspace_id if workspace_id and "/" not in workspace_id else None


# --- Inbound: the carrier ----------------------------------------------------------------------


class GatewayCarrier:
    """The gateway's posts: texts and statuses, each for the workspace its URL names. A
    carrier serves one app (its look-ups are kept per session factory)."""

    name = PROVIDER

    def __init__(self) -> None:
        self._gateways: Gateways | None = None

    def gateways(self, deps: Deps) -> Gateways:
        if self._gateways is None or self._gateways.sessions is not deps.reads:
            self._gateways = Gateways(deps.reads)
        return self._gateways

    async def check(self, deps: Deps, delivery: Delivery) -> str | None:
        workspace_id = workspace_in(delivery.route)
        if workspace_id is None:
            return f"{delivery.route[:100]} names no workspace"
        config = await self.gateways(deps).get(workspace_id)
        if config is None:
            return f"no workspace {workspace_id[:_WORKSPACE_ID_MAX]!r}"
        if not config.secret:
            return (
                f"workspace {workspace_id} has no gateway secret (`smsagent workspaces gateway`; "
                "SMSAGENT_GATEWAY_SECRET for the default workspace)"
            )
        return signature_problem(
            config.secret,
            delivery.body,
            delivery.header(SIGNATURE_HEADER),
            at=delivery.received_at.timestamp(),
            tolerance=deps.settings.webhook_tolerance_seconds,
        )

    async def process(self, deps: Deps, delivery: Delivery) -> web.Response:
        workspace_id = workspace_in(delivery.route)
        config = await self.gateways(deps).get(workspace_id) if workspace_id else None
        if config is None:
            # Only a replay trusted past its check gets here.
            raise HttpError(404, "not_found", f"{delivery.route[:100]} names no workspace")
        payload = _payload(delivery.body)
        kind = payload.get("type")
        if kind == MESSAGE_RECEIVED:
            return await _received(deps, config, validated(MessageReceived, payload))
        if kind == MESSAGE_STATUS:
            return await _status(deps, config, validated(MessageStatusReport, payload))
        raise HttpError(
            422,
            "unknown_type",
            f"type must be one of {', '.join(EVENT_TYPES)}",
            details={"type": kind if isinstance(kind, str) else None, "allowed": EVENT_TYPES},
        )


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise HttpError(422, "validation_error", "the body must be a JSON object")
    return payload


async def _received(deps: Deps, config: GatewayConfig, text: MessageReceived) -> web.Response:
    to = phone_field(text.to, "to")
    if to not in config.numbers:
        raise HttpError(
            422,
            "number_not_in_workspace",
            f"{mask_phone(to)} is not one of workspace {config.workspace_id}'s numbers",
            details=[{"field": "to", "message": "not one of the workspace's numbers"}],
        )
    accepted = await accept_inbound(
        deps,
        InboundSms(
            provider=PROVIDER,
            provider_message_id=scoped(config.workspace_id, text.id),
            from_number=phone_field(text.from_, "from"),
            to_number=to,
            body=text.text,
            media_urls=tuple(item.url for item in text.media),
        ),
    )
    return web.json_response(
        {"ok": True, "message_id": accepted.message_id, "duplicate": accepted.duplicate}
    )


async def _status(deps: Deps, config: GatewayConfig, report: MessageStatusReport) -> web.Response:
    message = await _ours(deps, config, report)
    if message is None or message.workspace_id != config.workspace_id:
        # Not a text of this workspace's (our `message_id` is the gateway's to give).
        log.info(
            "gateway.status_unmatched workspace_id=%s provider_id=%s status=%s",
            config.workspace_id,
            report.id,
            report.status,
        )
        return web.json_response({"ok": True, "applied": False})
    applied = await record_delivery(
        deps,
        provider=PROVIDER,
        provider_message_id=scoped(config.workspace_id, report.id),
        status=MessageStatus(report.status),
        message_id=message.id,
        error_code=report.error_code or None,
    )
    return web.json_response({"ok": True, "applied": applied})


async def _ours(deps: Deps, config: GatewayConfig, report: MessageStatusReport) -> Message | None:
    """The outbound text a status is about: by our id when the gateway gave it, else by its."""
    async with deps.reads() as session:
        if report.message_id:
            message = await messages.get_message(session=session, message_id=report.message_id)
            if message is not None and message.provider == PROVIDER:
                return message
        return await messages.find_by_provider_id(
            session=session,
            provider=PROVIDER,
            provider_message_id=scoped(config.workspace_id, report.id),
        )


# --- Outbound: the provider ----------------------------------------------------------------------


class GatewayProvider:
    """Sends through each workspace's own gateway URL, signed with its secret. The URLs are the
    businesses', so requests go through the guarded client (`webhooks/outbound.py`)."""

    name = PROVIDER
    # A gateway is a pipe: STOP / START / HELP are ours to answer.
    answers_keywords = False

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        gateways: Gateways,
        public_url: str,
        settings: Settings,
    ) -> None:
        self._http = http
        self._gateways = gateways
        self._public_url = public_url
        self._settings = settings

    def media_headers(self, url: str) -> dict[str, str]:
        # The gateway's media links carry whatever access they need themselves.
        return {}

    async def send(self, sms: OutboundSms) -> SendResult:
        config = await self._gateways.get(sms.workspace_id)
        if config is None or not config.url or not config.secret:
            raise ProviderError(
                f"workspace {sms.workspace_id} has no gateway URL and secret "
                "(`smsagent workspaces gateway`)",
                code="gateway_not_configured",
            )
        body = json.dumps(
            {
                "type": MESSAGE_SEND,
                "id": sms.message_id,
                "from": sms.sender,
                "to": sms.to,
                "text": sms.body,
                "media_urls": list(sms.media_urls),
                "status_url": f"{self._public_url}{PATH_PREFIX}{sms.workspace_id}",
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "smsagent-gateway",
            SIGNATURE_HEADER: sign(config.secret, body),
        }
        try:
            refuse_private_literal(config.url, self._settings)
            # A redirect would hand the signed text to wherever it points: not followed.
            answer = await post(
                self._http,
                config.url,
                provider="the gateway",
                data=body,
                headers=headers,
                allow_redirects=False,
            )
        except (PrivateAddress, ProviderError) as exc:
            # The guarded resolver's refusal arrives as the cause of a failed connection.
            cause = exc.__cause__ if isinstance(exc, ProviderError) else exc
            if cause is None or not private_address(cause):
                raise
            raise ProviderError(
                f"the gateway URL of workspace {sms.workspace_id} is not a public address "
                "(see SMSAGENT_CALLBACKS_ALLOW_PRIVATE)",
                code="private_address",
            ) from exc
        if not answer.ok:
            error = answer.body.get("error")
            error = error if isinstance(error, dict) else {}
            code = error.get("code")
            raise refused(answer, error.get("message"), code, opted_out=code == OPTED_OUT)
        return _sent(sms.workspace_id, answer.body)


def scoped(workspace_id: str, gateway_id: str) -> str:
    """A gateway's id as kept: each workspace's gateway numbers its texts its own way, so the
    same id from two gateways must not make one text a duplicate of the other. Kept within the
    column's 64 characters (a long id by its hash)."""
    kept = f"{workspace_id}/{gateway_id}"
    if len(kept) <= MAX_ID:
        return kept
    digest = hashlib.sha256(gateway_id.encode()).hexdigest()
    return f"{workspace_id}/#{digest}"[:MAX_ID]


def _sent(workspace_id: str, answer: dict[str, Any]) -> SendResult:
    gateway_id = answer.get("id")
    if not isinstance(gateway_id, str) or not gateway_id:
        raise ProviderError("the gateway took the text but answered no id", code="no_id")
    if len(gateway_id) > MAX_ID:
        raise ProviderError(
            f"the gateway took the text but its id is longer than {MAX_ID} characters",
            code="bad_id",
        )
    return SendResult(provider_message_id=scoped(workspace_id, gateway_id), status="sent")
