"""Messages as the inbox API shows them: a text (`SmsMessage`) and a text with a time to go
(`PendingMessage`), and the ids they carry.

| Avochato                     | here                                                           |
|------------------------------|----------------------------------------------------------------|
| `event_id`, `element_id`     | the message's id (`msg_…`); `uuid` is derived from it          |
| `account_id`, `ticket_id`    | the workspace's and the conversation's ids                     |
| `direction` in / out         | inbound / outbound                                             |
| `status`                     | ours; a received text shows as `delivered` (it reached us)     |
| `sender_type`                | `User` (a team member's text, `sender_id` theirs), `Bot` (the  |
|                              | agent's or the service's own), `Api` (sent by an API key)      |
| `origin`                     | `api` for a text an API sent, else null                        |
| `carrier`, `external_id`     | the provider and its id for the text                           |
| `error_code`                 | the provider's numeric code (0: none); other codes in `reason` |
| `contents`                   | the media URLs                                                 |
| `PendingMessage`             | a message given a time to go (`send_at`): asked, or held for   |
|                              | the recipient's quiet hours; `aborted` once canceled           |
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import inbox_messages
from storage.models import Message, MessageAuthor, MessageDirection, MessageStatus
from webhooks.avochato.common import epoch

# The namespace of the uuids derived from our ids: the same id always gets the same uuid.
_UUIDS = uuid.UUID("5f0b6a4e-2d0c-4c2e-9a51-7d3c1f0e8b21")
_SENDER_TYPES: dict[str, str] = {
    MessageAuthor.HUMAN: "User",
    MessageAuthor.API: "Api",
    MessageAuthor.AGENT: "Bot",
    MessageAuthor.SYSTEM: "Bot",
}
# Statuses of a message that has gone (or is going) to the carrier.
GONE = (
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.FAILED,
)


class SmsMessageOut(BaseModel):
    uuid: str
    account_id: str
    ticket_id: str
    contact_id: str
    sender_id: str | None
    sender_type: str | None
    broadcast_id: None = None
    salesforce_activity_id: None = None
    salesforce_group_activity_id: None = None
    to: str
    from_: str = Field(alias="from")
    direction: Literal["in", "out"]
    origin: str | None
    message: str
    contents: list[str]
    segments: int
    carrier: str | None
    external_id: str | None
    status: str
    error_code: int
    error_description: str | None
    reason: str | None
    status_callback: str | None
    created_at: float
    sent_at: float
    content_blocked: None = None
    boost_multiplier: int = 1
    event_id: str
    element_id: str
    element_type: Literal["SmsMessage"] = "SmsMessage"


class SentElement(BaseModel):
    element_id: str | None
    element_type: str | None


class PendingMessageOut(BaseModel):
    account_id: str
    ticket_id: str
    contact_id: str
    sender: str | None
    message: str
    media_url: str | None
    aborted: bool
    sent: SentElement
    scheduled_for: float | None
    created_at: float
    cancel_on: None = None
    aborter_id: str | None
    aborted_by: str | None
    abort_reason: str | None
    status_callback: str | None
    event_id: str
    element_id: str
    element_type: Literal["PendingMessage"] = "PendingMessage"
    sent_at: float


class OneMessage(BaseModel):
    message: SmsMessageOut | PendingMessageOut


class MessageAnswer(BaseModel):
    status: int
    data: OneMessage


class SmsMessages(BaseModel):
    messages: list[SmsMessageOut]


class SmsMessagesAnswer(BaseModel):
    status: int
    data: SmsMessages
    page: int


class PendingMessages(BaseModel):
    messages: list[PendingMessageOut]


class PendingMessagesAnswer(BaseModel):
    status: int
    data: PendingMessages
    page: int


def element_uuid(ident: str) -> str:
    """A stable uuid for one of our ids (the inbox gives every element one)."""
    return str(uuid.uuid5(_UUIDS, ident))


def sms_message_out(
    message: Message, contact_id: str, *, status: str | None = None
) -> SmsMessageOut:
    """A message as the inbox shows it; `status` instead of the stored one when given."""
    inbound = message.direction == MessageDirection.INBOUND
    shown = status or message.status
    code = message.error_code
    numeric = code is not None and code.isdigit()
    if inbound:
        sender_id, sender_type = None, None
    elif message.sender_user_id:
        sender_id, sender_type = message.sender_user_id, "User"
    else:
        sender_id, sender_type = None, _SENDER_TYPES.get(message.author, "Bot")
    return SmsMessageOut.model_validate(
        {
            "uuid": element_uuid(message.id),
            "account_id": message.workspace_id,
            "ticket_id": message.conversation_id,
            "contact_id": contact_id,
            "sender_id": sender_id,
            "sender_type": sender_type,
            "to": message.to_number,
            "from": message.from_number,
            "direction": "in" if inbound else "out",
            "origin": "api" if message.origin else None,
            "message": message.body,
            "contents": list(message.media_urls or []),
            "segments": message.segments,
            "carrier": message.provider,
            "external_id": message.provider_message_id,
            "status": "delivered" if shown == MessageStatus.RECEIVED else shown,
            "error_code": int(code) if numeric and code is not None else 0,
            "error_description": message.error_message,
            "reason": None if numeric else code,
            "status_callback": message.status_callback,
            "created_at": epoch(message.created_at) or 0.0,
            "sent_at": epoch(message.sent_at or message.created_at) or 0.0,
            "event_id": message.id,
            "element_id": message.id,
        }
    )


def is_pending(message: Message) -> bool:
    """Whether the inbox shows the message as a `PendingMessage`: given a time to go, and
    still waiting for it or canceled before it came."""
    return message.send_at is not None and message.status in (
        MessageStatus.SCHEDULED,
        MessageStatus.CANCELED,
    )


def pending_message_out(
    message: Message, contact_id: str, names: dict[str, str], aborter_id: str | None = None
) -> PendingMessageOut:
    """A message with a time to go; `names` of the team by id, `aborter_id` who canceled it."""
    aborted = message.status == MessageStatus.CANCELED
    went = message.status in GONE
    return PendingMessageOut(
        account_id=message.workspace_id,
        ticket_id=message.conversation_id,
        contact_id=contact_id,
        sender=names.get(message.sender_user_id or ""),
        message=message.body,
        media_url=message.media_urls[0] if message.media_urls else None,
        aborted=aborted,
        sent=SentElement(
            element_id=message.id if went else None, element_type="SmsMessage" if went else None
        ),
        scheduled_for=epoch(message.send_at),
        created_at=epoch(message.created_at) or 0.0,
        aborter_id=aborter_id if aborted else None,
        aborted_by=names.get(aborter_id or "") if aborted else None,
        abort_reason="manually cancelled" if aborted else None,
        status_callback=message.status_callback,
        event_id=message.id,
        element_id=message.id,
        sent_at=epoch(message.updated_at) or 0.0,
    )


async def pending_messages(
    session: AsyncSession, found: Sequence[tuple[Message, str]]
) -> list[PendingMessageOut]:
    """Messages (with their contacts' ids) as `PendingMessage`s, with who sent and who
    canceled each: two look-ups for all of them."""
    canceled = await inbox_messages.cancellations(
        session=session,
        conversation_ids=[m.conversation_id for m, _ in found if m.status == "canceled"],
    )
    names = await inbox_messages.user_names(
        session=session,
        user_ids=[m.sender_user_id or "" for m, _ in found] + [u or "" for u in canceled.values()],
    )
    return [
        pending_message_out(message, contact_id, names, canceled.get(message.id))
        for message, contact_id in found
    ]


def dump(model: BaseModel) -> dict[str, Any]:
    """An answer's JSON, with the names the inbox uses (`from`)."""
    return model.model_dump(mode="json", by_alias=True)
