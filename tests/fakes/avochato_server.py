"""Stub of Avochato's REST API (`POST /v1/messages`) for tests, on loopback.

It takes a message only with the account's `auth_id` / `auth_secret` and the documented
parameters (query string, JSON or form body), answers in Avochato's envelope
``{"status": 200, "data": {"message": {…, "event_id": …}}}`` and fails in its error shape
``{"status": <code>, "errors": [...]}``; failures can be scripted (`fail_next`). As a
`Handset` (tests/fakes/handset.py) it posts a message's status to the `status_callback` it
was given, and customers' texts to the service's inbound webhook (whose URL carries the
token the operator configures in Avochato).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.fakes.handset import SentSms
from tests.fakes.loopback import LoopbackStub

DEFAULT_AUTH_ID = "3OLb4KO84Y"
DEFAULT_AUTH_SECRET = "avochato-test-auth-secret-0123456789"
ACCOUNT_ID = "ezjJ7OlJ5y"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_ID_ALPHABET = string.ascii_letters + string.digits


def avochato_error(status: int, *errors: str) -> web.Response:
    """An answer in Avochato's error shape."""
    return web.json_response({"status": status, "errors": list(errors)}, status=status)


def inbound_token(auth_secret: str) -> str:
    """The token of the inbound webhook URL the operator gives Avochato."""
    return hmac.new(auth_secret.encode(), b"inbound", hashlib.sha256).hexdigest()


def _event_id() -> str:
    # Avochato's ids are ten letters and digits ("43y83xbVNM").
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    retry_after: int | None = None


class AvochatoStub(LoopbackStub):
    """Avochato's send API on loopback, and the customer's handset behind it."""

    name = "avochato"
    label = "AvochatoStub"

    def __init__(
        self,
        auth_id: str = DEFAULT_AUTH_ID,
        auth_secret: str = DEFAULT_AUTH_SECRET,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.auth_id = auth_id
        self.auth_secret = auth_secret
        self._failures: deque[Failure] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._create)

    def fail_next(
        self,
        status: int = 500,
        message: str = "Internal Server Error",
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this error, before auth and validation."""
        self._failures.extend([Failure(status, message, retry_after)] * times)

    # --- The Handset protocol -----------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "sms_provider": "avochato",
            "avochato_api_url": self.base_url,
            "avochato_auth_id": self.auth_id,
            "avochato_auth_secret": self.auth_secret,
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
        message = self._element(
            event_id=provider_id or _event_id(),
            direction="in",
            sender=sender,
            to=to,
            text=body,
            contents=[url for url, _ in media or []],
            status="received",
        )
        path = f"/webhooks/avochato/inbound?token={inbound_token(self.auth_secret)}"
        status, _ = await self.post(service_url.rstrip("/") + path, message)
        return status

    def as_sent(self, m: dict[str, Any]) -> SentSms:
        return SentSms(
            provider_id=m["event_id"],
            to=m["to"],
            sender=m["from"],
            body=m["message"],
            media_urls=tuple(m["contents"]),
            extra=m,
        )

    async def report(self, service_url: str, sms: SentSms, status: str = "delivered") -> int:
        code, _ = await self.status_callback(
            service_url,
            sms.provider_id,
            status,
            error_code=30003 if status in ("failed", "undelivered") else 0,
        )
        return code

    async def status_callback(
        self,
        service_url: str,
        event_id: str,
        status: str,
        *,
        error_code: int = 0,
        url: str | None = None,
    ) -> tuple[int, Any]:
        """POST the message with its new status to the `status_callback` it was sent with
        (or `url`), on the service at `service_url`."""
        sent = next(m for m in self.messages if m["event_id"] == event_id)
        callback = urlsplit(url or sent["status_callback"])
        message = {**sent, "status": status, "error_code": error_code}
        base = service_url.rstrip("/")
        return await self.post(f"{base}{callback.path}?{callback.query}", message)

    async def post(self, url: str, message: dict[str, Any]) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=message) as response,
        ):
            return response.status, await response.json(content_type=None)

    # --- Avochato's side ----------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        raw = await request.read()
        if raw and "json" in request.content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                return avochato_error(400, "Malformed JSON")
            if not isinstance(body, dict):
                return avochato_error(400, "Malformed JSON")
            params |= {k: v for k, v in body.items()}
        elif raw:
            form = await request.post()
            params |= {k: str(v) for k, v in form.items()}
        record: dict[str, Any] = {"params": params, "status": None}
        self.requests.append(record)
        response = self._answer(params)
        record["status"] = response.status
        self.taken()
        return response

    def _answer(self, params: dict[str, Any]) -> web.Response:
        if self._failures:
            failure = self._failures.popleft()
            response = avochato_error(failure.status, failure.message)
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(failure.retry_after)
            return response
        if params.get("auth_id") != self.auth_id or not hmac.compare_digest(
            str(params.get("auth_secret", "")), self.auth_secret
        ):
            return avochato_error(401, "Invalid auth_id or auth_secret")
        phone = params.get("phone")
        if not isinstance(phone, str) or not phone:
            return avochato_error(400, "phone is required")
        if not E164.match(phone):
            return avochato_error(400, f"{phone} is not a valid phone number")
        sender = params.get("from")
        if sender is not None and not (isinstance(sender, str) and E164.match(sender)):
            return avochato_error(400, "from must be one of the account's numbers")
        text, media_url = params.get("message"), params.get("media_url")
        if not text and not media_url:
            return avochato_error(400, "message is required unless media_url is given")
        for name in ("media_url", "status_callback"):
            value = params.get(name)
            if value is not None and not str(value).startswith(("https://", "http://")):
                return avochato_error(400, f"{name} must be a URL")
        message = self._element(
            event_id=_event_id(),
            direction="out",
            sender=str(sender or "+14155550000"),
            to=phone,
            text=str(text or ""),
            contents=[str(media_url)] if media_url else [],
            status="queued",
            status_callback=params.get("status_callback"),
        )
        self.messages.append(message)
        return web.json_response({"status": 200, "data": {"message": message}})

    def _element(
        self,
        *,
        event_id: str,
        direction: str,
        sender: str,
        to: str,
        text: str,
        contents: list[str],
        status: str,
        status_callback: str | None = None,
    ) -> dict[str, Any]:
        """A message as Avochato's API shows one."""
        now = time.time()
        return {
            "uuid": str(uuid.uuid4()),
            "account_id": ACCOUNT_ID,
            "ticket_id": "tk" + event_id[2:],
            "contact_id": "ct" + event_id[2:],
            "sender_id": None,
            "sender_type": "Api" if direction == "out" else None,
            "broadcast_id": None,
            "to": to,
            "from": sender,
            "direction": direction,
            "origin": "api" if direction == "out" else None,
            "message": text,
            "contents": contents,
            "segments": 1,
            "carrier": "twilio",
            "external_id": "SM" + secrets.token_hex(16),
            "status": status,
            "error_code": 0,
            "error_description": None,
            "reason": None,
            "status_callback": status_callback,
            "created_at": now,
            "sent_at": now,
            "event_id": event_id,
            "element_id": event_id,
            "element_type": "SmsMessage",
        }
