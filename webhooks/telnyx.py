"""Telnyx: the Messaging v2 API client (outbound SMS and MMS) and its webhooks (inbound texts,
delivery statuses), all of a messaging profile's events on one URL.

Telnyx signs each webhook with the account's ed25519 key: `telnyx-signature-ed25519` is the
base64 signature of `"{telnyx-timestamp}|"` followed by the raw body. The timestamp must lie
within the tolerance of when the request *arrived*, so a quarantined one can be checked again
later with the same result.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import aiohttp
from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from agent.delivery import record_delivery
from agent.deps import Deps
from agent.inbound import InboundSms, accept_inbound
from agent.providers import OutboundSms, ProviderError, SendResult
from storage.models import MessageStatus
from webhooks.carriers import Delivery, phone_field
from webhooks.errors import HttpError
from webhooks.sending import post, refused

log = logging.getLogger("smsagent.telnyx")

WEBHOOK_PATH = "/webhooks/telnyx"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
# Telnyx: "Blocked due to STOP message" (the recipient texted STOP to the messaging profile).
BLOCKED_BY_STOP = "40300"
# Media items kept from one text (MMS carries at most 10).
MAX_MEDIA = 10
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

# Telnyx's per-recipient statuses in ours. A carrier that never confirms leaves a text "sent".
STATUS_MAP = {
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "delivery_unconfirmed": "sent",
    "sending_failed": "failed",
    "delivery_failed": "failed",
}


@lru_cache(maxsize=8)
def _verify_key(public_key: str) -> VerifyKey:
    """The account's key, decoded once; ValueError when it is not a base64 ed25519 key."""
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, not 32")
    return VerifyKey(raw)


def signature_problem(
    *,
    public_key: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    received_at: datetime,
    tolerance: int,
) -> str | None:
    """Why a request is not Telnyx's, or None when its signature and timestamp hold."""
    if not signature:
        return f"no {SIGNATURE_HEADER} header"
    if not timestamp:
        return f"no {TIMESTAMP_HEADER} header"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"the {TIMESTAMP_HEADER} header is not unix seconds"
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return f"the {SIGNATURE_HEADER} header is not base64"
    if len(raw) != 64:
        return f"the {SIGNATURE_HEADER} header is {len(raw)} bytes, not an ed25519 signature"
    try:
        key = _verify_key(public_key)
    except ValueError as exc:
        return f"SMSAGENT_TELNYX_PUBLIC_KEY is not an ed25519 public key in base64 ({exc})"
    try:
        key.verify(timestamp.encode() + b"|" + body, raw)
    except BadSignatureError:
        return (
            f"the {SIGNATURE_HEADER} does not match the body "
            "(check SMSAGENT_TELNYX_PUBLIC_KEY: the account's public key)"
        )
    skew = received_at.timestamp() - int(timestamp)
    if skew > tolerance:
        return f"the {TIMESTAMP_HEADER} is {int(skew)} s older than the request"
    if skew < -tolerance:
        return f"the {TIMESTAMP_HEADER} is {int(-skew)} s ahead of the request"
    return None


class TelnyxCarrier:
    """Telnyx's webhooks: inbound texts (with their media) and delivery statuses."""

    name = "telnyx"

    async def check(self, deps: Deps, delivery: Delivery) -> str | None:
        settings = deps.settings
        if settings.telnyx_public_key is None:
            return "Telnyx is not configured (SMSAGENT_TELNYX_PUBLIC_KEY)"
        return signature_problem(
            public_key=settings.telnyx_public_key,
            signature=delivery.header(SIGNATURE_HEADER),
            timestamp=delivery.header(TIMESTAMP_HEADER),
            body=delivery.body,
            received_at=delivery.received_at,
            tolerance=settings.webhook_tolerance_seconds,
        )

    async def process(self, deps: Deps, delivery: Delivery) -> web.Response:
        data = _event(delivery.body)
        event_type = data.get("event_type")
        payload = data.get("payload")
        if not isinstance(event_type, str) or not isinstance(payload, dict):
            raise _missing("data.event_type", "data.payload")
        if event_type == "message.received":
            return await _inbound(deps, payload)
        if event_type in ("message.sent", "message.finalized"):
            return await _status(deps, delivery, payload)
        # Other events of the profile (number orders, …) are not ours to act on; a 2xx stops
        # Telnyx from retrying them.
        return web.json_response({"status": "ignored", "event_type": event_type})


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        raise _missing("data")
    return data


def _missing(*fields: str) -> HttpError:
    return HttpError(
        422, "missing_fields", f"missing or malformed {', '.join(fields)}", details=list(fields)
    )


def _first(items: Any) -> dict[str, Any]:
    """The first of a list of objects (Telnyx's `to`, `errors`), or {}."""
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def _inbound(deps: Deps, payload: Mapping[str, Any]) -> web.Response:
    message_id = _text(payload.get("id"))
    if message_id is None:
        raise _missing("data.payload.id")
    sender = payload.get("from")
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        raise _missing("data.payload.text")
    media = payload.get("media") or []
    if not isinstance(media, list):
        raise _missing("data.payload.media")
    inbound = InboundSms(
        provider="telnyx",
        provider_message_id=message_id,
        from_number=phone_field(
            _text(sender.get("phone_number")) if isinstance(sender, dict) else None,
            "data.payload.from.phone_number",
        ),
        to_number=phone_field(
            _text(_first(payload.get("to")).get("phone_number")), "data.payload.to.phone_number"
        ),
        body=text or "",
        media_urls=tuple(
            url
            for item in media[:MAX_MEDIA]
            if isinstance(item, dict) and (url := _text(item.get("url")))
        ),
    )
    accepted = await accept_inbound(deps, inbound)
    return web.json_response(
        {"status": "duplicate" if accepted.duplicate else "accepted", "id": message_id}
    )


async def _status(deps: Deps, delivery: Delivery, payload: Mapping[str, Any]) -> web.Response:
    provider_id = _text(payload.get("id"))
    raw = _text(_first(payload.get("to")).get("status"))
    if provider_id is None or raw is None:
        raise _missing("data.payload.id", "data.payload.to.status")
    status = STATUS_MAP.get(raw)
    if status is None:
        # Statuses we do not track are acknowledged and dropped.
        return web.json_response({"status": "ignored", "id": provider_id})
    code = _first(payload.get("errors")).get("code")
    await record_delivery(
        deps,
        provider="telnyx",
        provider_message_id=provider_id,
        status=MessageStatus(status),
        # Ours, carried in the webhook URL: a status can come before the send's answer is kept.
        message_id=delivery.query.get("message_id"),
        error_code=str(code) if status == "failed" and code is not None else None,
    )
    return web.json_response({"status": "recorded", "id": provider_id})


class TelnyxProvider:
    name = "telnyx"

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_url: str,
        api_key: str,
        public_url: str,
        messaging_profile_id: str | None = None,
        answers_keywords: bool = False,
    ) -> None:
        # By default Telnyx only blocks a recipient who texted STOP and sends nothing, so our
        # confirmation is tried (and refused with 40300 once the block is in place); with the
        # profile's Advanced Opt-In/Out auto-responses, Telnyx's reply is the confirmation.
        self.answers_keywords = answers_keywords
        self._http = http
        self._url = f"{api_url}/v2/messages"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._public_url = public_url
        self._profile = messaging_profile_id

    def media_headers(self, url: str) -> dict[str, str]:
        # Telnyx's media links are pre-signed: they need no credentials of ours.
        return {}

    async def send(self, sms: OutboundSms) -> SendResult:
        body: dict[str, Any] = {"from": sms.sender, "to": sms.to}
        # Text is required for SMS; a picture alone goes without it.
        if sms.body or not sms.media_urls:
            body["text"] = sms.body
        if sms.media_urls:
            body["media_urls"] = list(sms.media_urls)
        body["webhook_url"] = f"{self._public_url}{WEBHOOK_PATH}?message_id={sms.message_id}"
        if self._profile is not None:
            body["messaging_profile_id"] = self._profile
        answer = await post(
            self._http, self._url, provider="Telnyx", json=body, headers=self._headers
        )
        if not answer.ok:
            first = _first(answer.body.get("errors"))
            code = first.get("code")
            words = ": ".join(str(p) for p in (first.get("title"), first.get("detail")) if p)
            raise refused(answer, words, code, opted_out=str(code) == BLOCKED_BY_STOP)
        data = answer.body.get("data")
        provider_id = _text(data.get("id")) if isinstance(data, dict) else None
        if provider_id is None:
            raise ProviderError("Telnyx accepted the message but returned no id")
        return SendResult(provider_message_id=provider_id, status="sent")
