"""Provider webhooks: inbound texts and delivery statuses. Each answers after one durable write."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.delivery import record_delivery
from agent.inbound import InboundSms, accept_inbound
from agent.phones import InvalidPhoneNumber, normalize_phone
from agent.transcripts import load_conversation
from storage.models import MessageDirection, MessageStatus
from webhooks.errors import HttpError, read_json
from webhooks.keys import DEPS, SETTINGS
from webhooks.twilio import STATUS_MAP, signature_valid

log = logging.getLogger("smsagent.webhooks")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def twilio_form(request: web.Request) -> MultiDictProxy[str]:
    """The form, once its signature proves it came from Twilio."""
    settings = request.app[SETTINGS]
    form = await request.post()
    params = MultiDictProxy(MultiDict((k, str(v)) for k, v in form.items()))
    # Twilio routes are mounted only when both are configured.
    assert settings.twilio_auth_token is not None
    assert settings.public_url is not None
    if not signature_valid(
        auth_token=settings.twilio_auth_token.get_secret_value(),
        url=settings.public_url + request.path_qs,
        params=params,
        signature=request.headers.get("X-Twilio-Signature"),
    ):
        log.warning("twilio.signature_rejected path=%s", request.path)
        raise HttpError(403, "invalid_signature", "the X-Twilio-Signature does not match")
    return params


async def twilio_sms(request: web.Request) -> web.Response:
    params = await twilio_form(request)
    sid = params.get("MessageSid") or params.get("SmsSid")
    missing = [name for name, v in (("MessageSid", sid), ("From", params.get("From"))) if not v]
    if missing:
        raise HttpError(400, "missing_fields", f"missing {', '.join(missing)}", details=missing)
    assert sid is not None
    media = tuple(
        params[f"MediaUrl{i}"]
        for i in range(_int(params.get("NumMedia")))
        if f"MediaUrl{i}" in params
    )
    inbound = InboundSms(
        provider="twilio",
        provider_message_id=sid,
        from_number=_phone(params["From"], "From"),
        to_number=_phone(params.get("To") or request.app[SETTINGS].from_number, "To"),
        body=params.get("Body", ""),
        media_urls=media,
    )
    await accept_inbound(request.app[DEPS], inbound)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


async def twilio_status(request: web.Request) -> web.Response:
    params = await twilio_form(request)
    sid = params.get("MessageSid") or params.get("SmsSid")
    raw = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    status = STATUS_MAP.get(raw)
    if not sid or status is None:
        # Statuses we do not track (e.g. "receiving") are acknowledged and dropped.
        return web.Response(status=204)
    await record_delivery(
        request.app[DEPS],
        provider="twilio",
        provider_message_id=sid,
        status=MessageStatus(status),
        message_id=request.query.get("message_id"),
        error_code=params.get("ErrorCode") or None,
    )
    return web.Response(status=204)


class ConsoleSms(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from")
    to: str | None = None
    body: str = Field(max_length=1600)
    id: str | None = Field(default=None, max_length=64, description="provider id, for retries")

    @field_validator("from_", "to")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from exc


async def console_sms(request: web.Request) -> web.Response:
    """The built-in console provider: a JSON text from a pretend handset."""
    sms = ConsoleSms.model_validate(await read_json(request))
    inbound = InboundSms(
        provider="console",
        provider_message_id=sms.id or f"CIN{secrets.token_hex(16)}",
        from_number=sms.from_,
        to_number=sms.to or request.app[SETTINGS].from_number,
        body=sms.body,
    )
    accepted = await accept_inbound(request.app[DEPS], inbound)
    return web.json_response(
        {
            "message_id": accepted.message_id,
            "conversation_id": accepted.conversation_id,
            "duplicate": accepted.duplicate,
        }
    )


async def console_replies(request: web.Request) -> web.Response:
    """What the pretend handset received in a console conversation, after a given message."""
    conversation_id = request.query.get("conversation_id", "")
    after = request.query.get("after")
    conversation = await load_conversation(
        sessions=request.app[DEPS].sessions, conversation_id=conversation_id
    )
    if conversation.provider != "console":
        raise HttpError(404, "not_found", f"no console conversation {conversation_id}")
    seen = after is None
    replies = []
    for message in conversation.messages:
        if seen and message.direction == MessageDirection.OUTBOUND:
            replies.append({"id": message.id, "body": message.body, "status": message.status})
        seen = seen or message.id == after
    return web.json_response(
        {"conversation_id": conversation.id, "mode": conversation.mode, "replies": replies}
    )


def _phone(value: str, field: str) -> str:
    try:
        return normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise HttpError(400, "invalid_phone", f"{field}: {exc}") from exc


def _int(value: str | None) -> int:
    try:
        return max(0, min(int(value or 0), 10))
    except ValueError:
        return 0
