"""Avochato as a sender: its documented REST API sends our texts (`POST /v1/messages`), a
`status_callback` per text brings their statuses back, and the account's message webhook
brings customers' texts in.

Avochato signs neither callback, so each URL carries a token only the service can make:
``hex HMAC-SHA256(auth_secret, message_id)`` on a text's status callback, and
``hex HMAC-SHA256(auth_secret, "inbound")`` on the webhook URL to configure in Avochato
(`inbound_webhook_url`). Both bodies are a message as Avochato's API shows one (its
`event_id`, `direction`, `from`, `to`, `message`, `contents`, `status`, `error_code`, …),
bare or wrapped as the API wraps it (``{"message": …}`` or ``{"data": {"message": …}}``), in
JSON or as a form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from agent.delivery import record_delivery
from agent.deps import Deps
from agent.inbound import InboundSms, accept_inbound
from agent.providers import OutboundSms, ProviderError, SendResult
from storage.models import MessageStatus
from webhooks.carriers import Delivery, phone_field, validated
from webhooks.errors import HttpError
from webhooks.sending import Answer, post, refused

log = logging.getLogger("smsagent.avochato_sender")

PROVIDER = "avochato"
STATUS_PATH = "/webhooks/avochato/status"
INBOUND_PATH = "/webhooks/avochato/inbound"
# What the inbound webhook's token signs (a status callback's signs the message's id).
INBOUND_SUBJECT = "inbound"
MAX_MEDIA = 10
MAX_ID = 64

# Avochato's message statuses in ours. Anything Avochato holds counts as sent by us.
STATUS_MAP = {
    "accepted": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "canceled",
}
_OPTED_OUT = ("opted out", "opted-out", "opt-out", "unsubscribed")


def callback_token(auth_secret: str, subject: str) -> str:
    """The token a callback URL carries: hex HMAC-SHA256 of `subject` under the auth secret."""
    return hmac.new(auth_secret.encode(), subject.encode(), hashlib.sha256).hexdigest()


def inbound_webhook_url(public_url: str, auth_secret: str) -> str:
    """The URL to give Avochato's message webhook."""
    return f"{public_url}{INBOUND_PATH}?token={callback_token(auth_secret, INBOUND_SUBJECT)}"


# --- Inbound: status callbacks and the message webhook -----------------------------------------


class AvochatoMessage(BaseModel):
    """A message as Avochato's API (and so its callbacks) shows one; what we read of it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event_id: str = Field(
        validation_alias=AliasChoices("event_id", "element_id", "id"),
        min_length=1,
        max_length=MAX_ID,
        pattern=r"^[^\x00-\x1f]+$",
    )
    direction: str | None = Field(default=None, max_length=10)
    status: str | None = Field(default=None, max_length=32)
    from_: str | None = Field(default=None, alias="from", max_length=32)
    to: str | None = Field(default=None, max_length=32)
    message: str = Field(default="", max_length=10_000)
    contents: list[str] = Field(default_factory=list, max_length=MAX_MEDIA)
    media_url: str | None = Field(default=None, max_length=2000)
    error_code: int | str | None = None
    error_description: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=200)

    @field_validator("contents", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        # Each content is a URL, or an object with one (an attachment).
        if isinstance(value, list):
            return [item.get("url", "") if isinstance(item, dict) else item for item in value]
        return value

    def media(self) -> tuple[str, ...]:
        urls = [url for url in self.contents if url.startswith(("https://", "http://"))]
        if not urls and self.media_url:
            urls = [self.media_url]
        return tuple(urls[:MAX_MEDIA])

    def error(self) -> str | None:
        """The carrier's numeric code when there is one (0 is none), else the reason."""
        code = str(self.error_code or "").strip()
        if code and code != "0":
            return code[:64]
        return self.reason[:64] if self.reason else None


class AvochatoCarrier:
    """Avochato's callbacks: a text's status (its `status_callback`) and the account's message
    webhook (customers' texts), each proven by the token in its URL."""

    name = PROVIDER

    async def check(self, deps: Deps, delivery: Delivery) -> str | None:
        secret = deps.settings.avochato_auth_secret
        if secret is None:
            return "Avochato is not configured (SMSAGENT_AVOCHATO_AUTH_SECRET)"
        query = delivery.query
        if delivery.route == STATUS_PATH:
            subject = query.get("message_id")
            if not subject:
                return "no message_id in the status callback URL"
        elif delivery.route == INBOUND_PATH:
            subject = INBOUND_SUBJECT
        else:
            return f"{delivery.route[:100]} is not an Avochato callback"
        token = query.get("token")
        if not token:
            return "no token in the callback URL"
        expected = callback_token(secret.get_secret_value(), subject)
        if not hmac.compare_digest(expected.encode(), token.encode()):
            return "the token does not match (check SMSAGENT_AVOCHATO_AUTH_SECRET)"
        return None

    async def process(self, deps: Deps, delivery: Delivery) -> web.Response:
        message = _message(delivery)
        if delivery.route == STATUS_PATH:
            return await _status(deps, delivery, message)
        return await _inbound(deps, message)


def _message(delivery: Delivery) -> AvochatoMessage:
    payload = _payload(delivery)
    # Bare, `{"message": …}` or the API's envelope `{"status": 200, "data": {"message": …}}`
    # (a bare message's own `message` is its text, not an object).
    if isinstance(data := payload.get("data"), dict):
        payload = data
    if isinstance(inner := payload.get("message"), dict):
        payload = inner
    return validated(AvochatoMessage, payload)


def _payload(delivery: Delivery) -> dict[str, Any]:
    text = delivery.body.decode("utf-8", "replace")
    if "json" in (delivery.header("content-type") or "") or text.lstrip().startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise HttpError(422, "validation_error", "the body must be a JSON object")
        return payload
    form: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        # Rails-style lists (`contents[]=…`) gather; message[…] keys unwrap.
        name = key.removeprefix("message[").removesuffix("]") if key.startswith("message[") else key
        if name.endswith("[]"):
            form.setdefault(name[:-2], []).append(value)
        else:
            form[name] = value
    return form


async def _status(deps: Deps, delivery: Delivery, message: AvochatoMessage) -> web.Response:
    raw = (message.status or "").lower()
    status = STATUS_MAP.get(raw)
    if status is None:
        # Statuses we do not track are acknowledged and dropped.
        return web.json_response({"ok": True, "applied": False})
    applied = await record_delivery(
        deps,
        provider=PROVIDER,
        provider_message_id=message.event_id,
        status=MessageStatus(status),
        # Ours, carried in the callback URL: a status can come before the send's answer is kept.
        message_id=delivery.query.get("message_id"),
        error_code=message.error() if status in ("failed", "undelivered") else None,
    )
    return web.json_response({"ok": True, "applied": applied})


async def _inbound(deps: Deps, message: AvochatoMessage) -> web.Response:
    if (message.direction or "in").lower() != "in":
        # The webhook reports our own texts too; their statuses come by their callbacks.
        return web.json_response({"ok": True, "ignored": "outbound"})
    accepted = await accept_inbound(
        deps,
        InboundSms(
            provider=PROVIDER,
            provider_message_id=message.event_id,
            from_number=phone_field(message.from_, "from"),
            to_number=phone_field(message.to or deps.settings.from_number, "to"),
            body=message.message,
            media_urls=message.media(),
        ),
    )
    return web.json_response(
        {"ok": True, "message_id": accepted.message_id, "duplicate": accepted.duplicate}
    )


# --- Outbound: the provider ----------------------------------------------------------------------


class AvochatoProvider:
    name = PROVIDER
    # Avochato answers STOP / START itself (its TCPA keyword handling): the opt-out is still
    # recorded here, but no confirmation of ours is sent on top of its own.
    answers_keywords = True

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_url: str,
        auth_id: str,
        auth_secret: str,
        public_url: str,
    ) -> None:
        self._http = http
        self._url = f"{api_url}/v1/messages"
        self._auth_id = auth_id
        self._auth_secret = auth_secret
        self._public_url = public_url

    def media_headers(self, url: str) -> dict[str, str]:
        # Avochato's media links are public (or pre-signed): they need no credentials.
        return {}

    async def send(self, sms: OutboundSms) -> SendResult:
        text = sms.body
        media = list(sms.media_urls)
        if len(media) > 1:
            # One Avochato text carries one `media_url`: the first file goes as the attachment,
            # the others as links at the end of the text.
            text = "\n".join(part for part in (sms.body, *media[1:]) if part)
        token = callback_token(self._auth_secret, sms.message_id)
        body: dict[str, Any] = {
            "auth_id": self._auth_id,
            "auth_secret": self._auth_secret,
            "phone": sms.to,
            "message": text,
            "from": sms.sender,
            "status_callback": (
                f"{self._public_url}{STATUS_PATH}?message_id={sms.message_id}&token={token}"
            ),
        }
        if media:
            body["media_url"] = media[0]
        answer = await post(self._http, self._url, provider="Avochato", json=body)
        if not answer.ok:
            raise _error(answer)
        return _sent(answer.body)


def _sent(answer: dict[str, Any]) -> SendResult:
    data = answer.get("data")
    message = data.get("message") if isinstance(data, dict) else None
    found = (message.get("event_id") or message.get("id")) if isinstance(message, dict) else None
    if not isinstance(found, str) or not found or len(found) > MAX_ID:
        raise ProviderError("Avochato took the message but answered no usable id", code="no_id")
    return SendResult(provider_message_id=found, status="sent")


def _error(answer: Answer) -> ProviderError:
    """Avochato answers `{"status": <code>, "errors": [...] | "..."}`; an `error` object (the
    compatible inbox API's) is read too."""
    errors = answer.body.get("errors")
    texts = [str(e) for e in errors] if isinstance(errors, list) else [str(errors or "")]
    error = answer.body.get("error")
    code: str | None = None
    if isinstance(error, dict):
        code = str(error.get("code") or "") or None
        texts.append(str(error.get("message") or ""))
    elif isinstance(error, str):
        texts.append(error)
    message = "; ".join(t for t in texts if t)
    lowered = message.lower()
    opted_out = code == "contact_opted_out" or (
        400 <= answer.status < 500 and any(phrase in lowered for phrase in _OPTED_OUT)
    )
    return refused(answer, message, code, opted_out=opted_out)
