"""Stub of Telnyx's Messaging v2 API (send a message) and of its signed webhooks, for tests.

In process::

    async with TelnyxStub() as telnyx:
        service = await make_service(**telnyx.settings())
        await telnyx.text_in(service.url(""), sender=..., to=..., body="Hi")  # signed
        [reply] = await telnyx.sent(1)
        await telnyx.report(service.url(""), reply, "delivered")

The stub owns an ed25519 key pair: its public key is the account key the service is configured
with, and every webhook it sends is signed with the private one, as Telnyx signs them
(`sign`, for tests that tamper). It is also a `Handset` (tests/fakes/handset.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from nacl.signing import SigningKey

from tests.fakes.handset import SentSms
from tests.fakes.loopback import LoopbackStub
from tests.fakes.twilio_server import num_segments

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DEFAULT_API_KEY = "KEY0123456789ABCDEF_test"
WEBHOOK_PATH = "/webhooks/telnyx"
PROFILE_ID = "4000eba1-a0c0-4563-9925-b25e842a7cb6"
ORGANIZATION_ID = "b448f9cc-a842-4784-98e9-03c1a5872950"

# Our words for a delivery outcome → Telnyx's event, recipient status and errors.
_REPORTS: dict[str, tuple[str, str, list[dict[str, str]]]] = {
    "sent": ("message.sent", "sent", []),
    "delivered": ("message.finalized", "delivered", []),
    "failed": (
        "message.finalized",
        "delivery_failed",
        [
            {
                "code": "40008",
                "title": "Undeliverable",
                "detail": "The message was not accepted by the carrier.",
            }
        ],
    ),
}


def sign(body: bytes, key: SigningKey, timestamp: int | str) -> str:
    """The `telnyx-signature-ed25519` of `body` sent at `timestamp` (unix seconds)."""
    signed = key.sign(f"{timestamp}|".encode() + body)
    return base64.b64encode(signed.signature).decode()


def signed_headers(
    body: bytes, key: SigningKey, timestamp: int | str | None = None
) -> dict[str, str]:
    """The headers Telnyx sends with a webhook: signature, timestamp and JSON content type."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "telnyx-signature-ed25519": sign(body, key, stamp),
        "telnyx-timestamp": stamp,
    }


def public_key_of(key: SigningKey) -> str:
    """The base64 public key, as Mission Control shows it."""
    return base64.b64encode(bytes(key.verify_key)).decode()


def telnyx_errors(status: int, code: str, title: str, detail: str | None = None) -> web.Response:
    """A response in Telnyx's error shape."""
    error: dict[str, Any] = {"code": code, "title": title}
    if detail is not None:
        error["detail"] = detail
    return web.json_response({"errors": [error]}, status=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def event(event_type: str, payload: dict[str, Any], *, delivered_to: str) -> dict[str, Any]:
    """A webhook as Telnyx delivers it: the event in `data`, the delivery in `meta`."""
    return {
        "data": {
            "record_type": "event",
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "occurred_at": _now(),
            "payload": payload,
        },
        "meta": {"attempt": 1, "delivered_to": delivered_to},
    }


def inbound_payload(
    *,
    message_id: str,
    sender: str,
    to: str,
    text: str,
    media: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The `payload` of a documented `message.received` event."""
    media = media or []
    return {
        "record_type": "message",
        "direction": "inbound",
        "id": message_id,
        "type": "MMS" if media else "SMS",
        "messaging_profile_id": PROFILE_ID,
        "organization_id": ORGANIZATION_ID,
        "from": {
            "phone_number": sender,
            "carrier": "T-MOBILE USA, INC.",
            "line_type": "Wireless",
        },
        "to": [
            {
                "phone_number": to,
                "status": "webhook_delivered",
                "carrier": "TELNYX LLC",
                "line_type": "VoIP",
            }
        ],
        "cc": [],
        "text": text,
        "media": [
            {
                "url": url,
                "content_type": content_type,
                "hash_sha256": secrets.token_hex(32),
                "size": 48213,
            }
            for url, content_type in media
        ],
        "webhook_url": None,
        "webhook_failover_url": None,
        "encoding": "GSM-7",
        "parts": num_segments(text) if text else 1,
        "tags": [],
        "cost": {"amount": "0.0040", "currency": "USD"},
        "received_at": _now(),
        "sent_at": None,
        "completed_at": None,
        "valid_until": None,
        "errors": [],
    }


def outbound_payload(
    message_id: str,
    request: dict[str, Any],
    status: str,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An outbound message resource (the send's answer, and the payload of its statuses)."""
    text = str(request.get("text") or "")
    media = [str(url) for url in request.get("media_urls") or []]
    finished = status in ("delivered", "delivery_failed", "sending_failed", "delivery_unconfirmed")
    return {
        "record_type": "message",
        "direction": "outbound",
        "id": message_id,
        "type": "MMS" if media else "SMS",
        "messaging_profile_id": request.get("messaging_profile_id") or PROFILE_ID,
        "organization_id": ORGANIZATION_ID,
        "from": {
            "phone_number": request.get("from"),
            "carrier": "TELNYX LLC",
            "line_type": "VoIP",
        },
        "to": [
            {
                "phone_number": request.get("to"),
                "status": status,
                "carrier": "T-MOBILE USA, INC.",
                "line_type": "Wireless",
            }
        ],
        "cc": [],
        "text": text,
        "subject": request.get("subject"),
        "media": [
            {"url": url, "content_type": None, "sha256": None, "size": None} for url in media
        ],
        "webhook_url": request.get("webhook_url"),
        "webhook_failover_url": request.get("webhook_failover_url"),
        "encoding": "GSM-7",
        "parts": num_segments(text) if text else 1,
        "tags": [],
        "cost": {"amount": "0.0051", "currency": "USD"},
        "received_at": _now(),
        "sent_at": _now() if status != "queued" else None,
        "completed_at": _now() if finished else None,
        "valid_until": None,
        "errors": errors or [],
    }


@dataclass(frozen=True)
class Failure:
    """A scripted error answer for the next request."""

    status: int
    code: str
    title: str
    detail: str | None = None
    retry_after: int | None = None


class TelnyxStub(LoopbackStub):
    """Loopback stub of `POST /v2/messages`, and a handset that texts in through Telnyx."""

    name = "telnyx"
    label = "TelnyxStub"

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.delay = delay
        self.signing_key = SigningKey.generate()
        self._failures: deque[Failure] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/messages", self._create)

    @property
    def public_key(self) -> str:
        return public_key_of(self.signing_key)

    def fail_next(
        self,
        status: int = 500,
        code: str = "10007",
        title: str = "Unexpected error",
        detail: str | None = None,
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this error, before auth and validation."""
        self._failures.extend([Failure(status, code, title, detail, retry_after)] * times)

    async def post_event(
        self,
        url: str,
        body: dict[str, Any] | bytes,
        *,
        key: SigningKey | None = None,
        timestamp: int | str | None = None,
    ) -> tuple[int, str]:
        """POST a webhook to `url`, signed as Telnyx signs it (by default with the stub's key,
        now); returns the status and the answer's text."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = signed_headers(raw, key or self.signing_key, timestamp)
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=raw, headers=headers) as response,
        ):
            return response.status, await response.text()

    # The Handset protocol (tests/fakes/handset.py).

    def settings(self) -> dict[str, Any]:
        return {
            "sms_provider": "telnyx",
            "telnyx_api_url": self.base_url,
            "telnyx_api_key": self.api_key,
            "telnyx_public_key": self.public_key,
        }

    async def text_in(
        self,
        service_url: str,
        *,
        sender: str,
        to: str,
        body: str,
        media: list[tuple[str, str]] | None = None,
        provider_id: str | None = None,
    ) -> int:
        url = service_url.rstrip("/") + WEBHOOK_PATH
        payload = inbound_payload(
            message_id=provider_id or str(uuid.uuid4()),
            sender=sender,
            to=to,
            text=body,
            media=media,
        )
        status, _ = await self.post_event(url, event("message.received", payload, delivered_to=url))
        return status

    def as_sent(self, m: dict[str, Any]) -> SentSms:
        return SentSms(
            provider_id=m["id"],
            to=str(m.get("to", "")),
            sender=str(m.get("from", "")),
            body=str(m.get("text") or ""),
            media_urls=tuple(str(url) for url in m.get("media_urls") or []),
            extra=m,
        )

    async def report(self, service_url: str, sms: SentSms, status: str = "delivered") -> int:
        event_type, telnyx_status, errors = _REPORTS[status]
        request = next((m for m in self.messages if m["id"] == sms.provider_id), sms.extra)
        # Telnyx calls the message's own webhook_url: keep its path and query, on the service.
        target = urlsplit(str(request.get("webhook_url") or WEBHOOK_PATH))
        url = service_url.rstrip("/") + (target.path or WEBHOOK_PATH)
        if target.query:
            url += "?" + target.query
        payload = outbound_payload(sms.provider_id, request, telnyx_status, errors)
        code, _ = await self.post_event(url, event(event_type, payload, delivered_to=url))
        return code

    # The send API.

    async def _create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "authorization": request.headers.get("Authorization"),
            "content_type": request.content_type,
            "body": raw.decode("utf-8", "replace"),
            "json": None,
            "status": None,
        }
        self.requests.append(record)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        response = self._respond(request, raw, record)
        record["status"] = response.status
        self.taken()
        return response

    def _respond(self, request: web.Request, raw: bytes, record: dict[str, Any]) -> web.Response:
        if self._failures:
            failure = self._failures.popleft()
            response = telnyx_errors(failure.status, failure.code, failure.title, failure.detail)
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(failure.retry_after)
            return response
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key, self.api_key):
            return telnyx_errors(
                401,
                "10009",
                "Authentication failed",
                "The required authentication headers were either invalid or not included in "
                "the request.",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return telnyx_errors(400, "10015", "Bad Request", "The request body is not JSON.")
        record["json"] = body
        if problem := _invalid(body):
            return problem
        message_id = str(uuid.uuid4())
        self.messages.append({**body, "id": message_id})
        return web.json_response({"data": outbound_payload(message_id, body, "queued")})


def _invalid(body: dict[str, Any]) -> web.Response | None:
    """Telnyx's answer to a send it refuses, or None."""
    to = body.get("to")
    if not isinstance(to, str) or not E164.match(to):
        return telnyx_errors(
            400,
            "40310",
            "Invalid 'to' address",
            "The 'to' address should be a single valid number.",
        )
    sender = body.get("from")
    if sender is None and not body.get("messaging_profile_id"):
        return telnyx_errors(400, "10004", "Missing required parameter", "'from' is required.")
    if sender is not None and (not isinstance(sender, str) or not E164.match(sender)):
        return telnyx_errors(
            400, "40305", "Invalid 'from' address", "The 'from' address should be +E.164."
        )
    text = body.get("text")
    media = body.get("media_urls")
    if text is not None and not isinstance(text, str):
        return telnyx_errors(400, "10015", "Bad Request", "'text' must be a string.")
    if media is not None and (
        not isinstance(media, list) or not media or not all(_absolute(url) for url in media)
    ):
        return telnyx_errors(
            400, "10003", "Invalid URL", "'media_urls' must be a list of absolute URLs."
        )
    if not text and not media:
        return telnyx_errors(
            400, "10004", "Missing required parameter", "'text' or 'media_urls' is required."
        )
    for field in ("webhook_url", "webhook_failover_url"):
        if body.get(field) is not None and not _absolute(body[field]):
            return telnyx_errors(400, "10003", "Invalid URL", f"'{field}' is not a valid URL.")
    return None


def _absolute(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
