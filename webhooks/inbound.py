"""The console provider's pretend handset: texts in, replies back. Signed providers' webhooks
are carriers (webhooks/carriers.py)."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.inbound import InboundSms, accept_inbound
from agent.phones import InvalidPhoneNumber, normalize_phone
from agent.transcripts import load_conversation
from storage.models import MessageDirection
from webhooks.errors import HttpError, read_json
from webhooks.keys import DEPS, SETTINGS

log = logging.getLogger("smsagent.webhooks")


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
