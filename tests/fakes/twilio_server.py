"""Stub of Twilio's Programmable Messaging REST API (create Message) for tests.

In process::

    async with TwilioStub() as twilio:
        # point the service at twilio.base_url with twilio.account_sid / twilio.auth_token
        await twilio.wait_for_messages(1)

As a separate process (``python -m tests.fakes.twilio_server --account-sid AC... --auth-token T``)
it prints ``READY http://127.0.0.1:PORT`` and exposes ``/_control/*`` endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import re
import secrets
import signal
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from tests.fakes.loopback import LoopbackStub

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "test-auth-token"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def num_segments(body: str) -> int:
    """SMS segment count: GSM-7 160/153 characters per segment, otherwise UCS-2 70/67."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body):
        units = len(body) + sum(c in _GSM_EXTENDED for c in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """A response with Twilio's JSON error shape."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


async def send_status_callback(
    url: str, params: dict[str, str], auth_token: str
) -> tuple[int, str]:
    """POST ``params`` form-encoded to ``url``, signed as Twilio does; return (status, text)."""
    signature = str(RequestValidator(auth_token).compute_signature(url, params))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as resp,
    ):
        return resp.status, await resp.text()


@dataclass(frozen=True)
class Failure:
    """A scripted error answer for the next request."""

    status: int
    code: int
    message: str
    retry_after: int | None = None


class TwilioStub(LoopbackStub):
    """Loopback stub of ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``."""

    label = "TwilioStub"

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        api_keys: dict[str, str] | None = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys: dict[str, str] = dict(api_keys or {})
        self.delay = delay
        # Each accepted message's MediaUrl values, by its sid.
        self.media: dict[str, list[str]] = {}
        self._failures: deque[Failure] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create)
        app.router.add_get("/_control/messages", self._control_messages)
        app.router.add_get("/_control/requests", self._control_requests)
        app.router.add_post("/_control/fail", self._control_fail)

    @property
    def messages_url(self) -> str:
        """Full URL of the create-Message endpoint for the configured account."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def fail_next(
        self,
        status: int = 500,
        code: int = 20500,
        message: str = "Internal Server Error",
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with this error, before auth and validation."""
        self._failures.extend([Failure(status, code, message, retry_after)] * times)

    async def send_status_callback(
        self,
        url: str,
        sid: str,
        status: str,
        auth_token: str | None = None,
        error_code: int | str | None = None,
    ) -> tuple[int, str]:
        """POST a signed delivery-status callback for message ``sid`` to ``url``.

        From/To are taken from the recorded message; ``auth_token`` defaults to the stub's.
        """
        sent = next((m for m in self.messages if m["sid"] == sid), {})
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "From": sent.get("From", ""),
            "To": sent.get("To", ""),
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        token = auth_token if auth_token is not None else self.auth_token
        return await send_status_callback(url, params, token)

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        login, colon, password = decoded.partition(":")
        if scheme.lower() != "basic" or not colon:
            return False
        expected = self.auth_token if login == self.account_sid else self.api_keys.get(login)
        return expected is not None and secrets.compare_digest(password, expected)

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {key: str(form[key]) for key in form}
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "authorization": request.headers.get("Authorization"),
            "form": fields,
            "status": None,
        }
        self.requests.append(record)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        media = [str(url) for url in form.getall("MediaUrl", [])]
        response = self._respond(request, fields, len(media))
        if response.status == 201 and self.messages:
            self.media[self.messages[-1]["sid"]] = media
        record["status"] = response.status
        self.taken()
        return response

    def _respond(self, request: web.Request, fields: dict[str, str], media: int) -> web.Response:
        if self._failures:
            failure = self._failures.popleft()
            response = twilio_error(failure.status, failure.code, failure.message)
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(failure.retry_after)
            return response
        if not self._authenticated(request):
            return twilio_error(401, 20003, "Authenticate")
        if request.match_info["sid"] != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        to = fields.get("To", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not fields.get("From") and not fields.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        service = fields.get("MessagingServiceSid")
        if service is not None and not re.fullmatch(r"MG[0-9a-fA-F]{32}", service):
            return twilio_error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        body = fields.get("Body", "")
        if not body and not media:
            return twilio_error(400, 21602, "Message body is required.")
        sid = "SM" + secrets.token_hex(16)
        self.messages.append({**fields, "sid": sid})
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": fields.get("From") or None,
            "messaging_service_sid": fields.get("MessagingServiceSid") or None,
            "body": body,
            "status": "queued",
            "num_segments": str(num_segments(body)),
            "num_media": str(media),
            "direction": "outbound-api",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "uri": uri,
            "api_version": API_VERSION,
            "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        }
        return web.json_response(resource, status=201)

    async def _control_messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages)

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _control_fail(self, request: web.Request) -> web.Response:
        data = await request.json()
        times = int(data.pop("times", 1))
        failure = Failure(**data)
        self.fail_next(**asdict(failure), times=times)
        return web.json_response({"queued_failures": len(self._failures)})


async def _serve(stub: TwilioStub) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with stub:
        print(f"READY {stub.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Run the stub until SIGTERM/SIGINT, printing ``READY <base_url>`` once listening."""
    parser = argparse.ArgumentParser(description="Twilio Messaging API stub")
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    stub = TwilioStub(
        args.account_sid, args.auth_token, delay=args.delay, host=args.host, port=args.port
    )
    asyncio.run(_serve(stub))


if __name__ == "__main__":
    main()
