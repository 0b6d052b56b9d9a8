"""Stub of an in-house SMS gateway speaking the signed gateway contract (webhooks/gateway.py),
for tests, on loopback.

It takes `message.send` at ``/send`` only when it is signed with its secret (within five
minutes of its clock) and shaped as documented, answers ``{"id": "gw_…"}``, and can be
scripted to fail (`fail_next`). As a `Handset` (tests/fakes/handset.py) it posts signed
`message.received` and `message.status` bodies to ``/webhooks/gateway/<workspace_id>``.
The signing here is written from the documented contract, not imported from the service, so
the two are checked against each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.handset import SentSms
from tests.fakes.loopback import LoopbackStub

DEFAULT_SECRET = "gwsec_test-gateway-secret-0123456789"
SIGNATURE_HEADER = "Smsagent-Signature"
TOLERANCE_SECONDS = 300
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# What the stub serves as a text's picture: JPEG's start and end markers around filler.
PIXEL_JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60 + b"\xff\xd9"


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, as documented."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def signed_by(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` signs `body` with `secret` within the tolerance of now."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    stamp = parts.get("t", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, body, int(stamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def gateway_error(status: int, code: str, message: str) -> web.Response:
    """An answer in the contract's error shape."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass(frozen=True)
class Failure:
    status: int
    code: str
    message: str
    retry_after: int | None = None


class GatewayStub(LoopbackStub):
    """An in-house gateway on loopback, and the customer's handset behind it."""

    name = "gateway"
    label = "GatewayStub"

    def __init__(
        self,
        secret: str = DEFAULT_SECRET,
        *,
        workspace_id: str = "ws_default",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        # Settable: a workspace's secret is made by `set_gateway` after the stub starts.
        self.secret = secret
        self.workspace_id = workspace_id
        self._failures: deque[Failure] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/send", self._send)
        app.router.add_get("/media/{name}", self._media)

    @property
    def send_url(self) -> str:
        """The gateway URL the service sends to."""
        return f"{self.base_url}/send"

    def media_url(self, name: str) -> str:
        return f"{self.base_url}/media/{name}"

    def fail_next(
        self,
        status: int = 500,
        code: str = "unavailable",
        message: str = "the gateway is down",
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` sends with this error (after the signature check)."""
        self._failures.extend([Failure(status, code, message, retry_after)] * times)

    # --- The Handset protocol -----------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "sms_provider": "gateway",
            "gateway_url": self.send_url,
            "gateway_secret": self.secret,
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
        status, _ = await self.post(
            service_url,
            {
                "type": "message.received",
                "id": provider_id or "gw_in_" + secrets.token_hex(8),
                "from": sender,
                "to": to,
                "text": body,
                "media": [{"url": url, "content_type": kind} for url, kind in media or []],
            },
        )
        return status

    def as_sent(self, m: dict[str, Any]) -> SentSms:
        return SentSms(
            provider_id=m["gateway_id"],
            to=m["to"],
            sender=m["from"],
            body=m["text"],
            media_urls=tuple(m["media_urls"]),
            extra=m,
        )

    async def report(self, service_url: str, sms: SentSms, status: str = "delivered") -> int:
        # Our id as well as the gateway's: the status may come before the send's answer is kept.
        payload: dict[str, Any] = {
            "type": "message.status",
            "id": sms.provider_id,
            "message_id": sms.extra.get("id"),
            "status": status,
        }
        if status in ("failed", "undelivered"):
            payload |= {"error_code": "30003", "error_message": "unreachable handset"}
        code, _ = await self.post(service_url, payload)
        return code

    async def post(
        self,
        service_url: str,
        payload: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        header: str | None = None,
        workspace_id: str | None = None,
    ) -> tuple[int, Any]:
        """POST a body to the service's gateway route, signed with the stub's secret (or
        `secret`, at `timestamp`); `header` replaces the signature outright. Returns the
        status and the JSON answer."""
        body = raw if raw is not None else json.dumps(payload).encode()
        signed = header if header is not None else signature(secret or self.secret, body, timestamp)
        base = service_url.rstrip("/")
        url = f"{base}/webhooks/gateway/{workspace_id or self.workspace_id}"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: signed},
            ) as response,
        ):
            return response.status, await response.json(content_type=None)

    # --- The gateway's side -------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        record: dict[str, Any] = {"headers": dict(request.headers), "body": body, "status": None}
        self.requests.append(record)
        response = self._answer(request, body)
        record["status"] = response.status
        self.taken()
        return response

    def _answer(self, request: web.Request, body: bytes) -> web.Response:
        if not signed_by(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            return gateway_error(401, "invalid_signature", "the Smsagent-Signature does not hold")
        if self._failures:
            failure = self._failures.popleft()
            response = gateway_error(failure.status, failure.code, failure.message)
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(failure.retry_after)
            return response
        try:
            payload = json.loads(body)
        except ValueError:
            return gateway_error(400, "invalid_json", "the body is not JSON")
        if problem := _shape_problem(payload):
            return gateway_error(400, "invalid_request", problem)
        gateway_id = "gw_" + secrets.token_hex(12)
        self.messages.append({**payload, "gateway_id": gateway_id})
        return web.json_response({"id": gateway_id})

    async def _media(self, request: web.Request) -> web.Response:
        return web.Response(body=PIXEL_JPEG, content_type="image/jpeg")


def _shape_problem(payload: Any) -> str | None:
    """What is wrong with a `message.send` body, or None when it is as documented."""
    if not isinstance(payload, dict) or payload.get("type") != "message.send":
        return "type must be message.send"
    for name in ("id", "from", "to", "text", "status_url"):
        if not isinstance(payload.get(name), str):
            return f"{name} must be a string"
    for name in ("from", "to"):
        if not E164.match(payload[name]):
            return f"{name} must be an E.164 number"
    urls = payload.get("media_urls")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        return "media_urls must be a list of URLs"
    if not payload["text"] and not urls:
        return "a text needs text or media_urls"
    if not payload["status_url"].startswith(("https://", "http://")):
        return "status_url must be an http(s) URL"
    return None
