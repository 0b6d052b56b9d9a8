"""Messages (`/v1/messages…`): send, fetch, list and search, the scheduled ones, cancel and
delete. Their shapes are in `message_shapes`, the search syntax in `message_search`, and the
`status_callback` a sender may ask for in `status_callbacks`.

Sending goes through the native send (`agent.kickoff.send`): the contact is upserted, the live
thread continued (or one opened), consent and quiet hours checked; in the same transaction the
message records the team member who sent it (the credentials' user, or `send_as_user_*`), the
contact gets the `tags` and the thread is marked addressed when asked. A text that goes now puts
the thread in a person's hands, as a person's reply in the native API does: the agent stays
silent there until the thread is handed back. A scheduled one leaves the thread as it is.

The recipient is a phone number or a contact's id; a live-chat identifier
(`avochato:c:…`) is refused (422): this inbox is SMS-only.

`DELETE` cancels a message still waiting for its time; one that went (or is going) cannot be
unsent, so it is hidden from the inbox's lists instead (and fetching it is 404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, field_validator, model_validator

from agent import hooks
from agent.deps import Deps
from agent.errors import Conflict, NotFound
from agent.kickoff import Outgoing, Sent, send
from agent.outbox import MAX_API_BODY, send_key
from agent.phones import InvalidPhoneNumber, normalize_phone
from storage import conversations, events, inbox_messages, inbox_threads, jobs, messages
from storage.models import (
    ConversationMode,
    ConversationStatus,
    Message,
    MessageAuthor,
    MessageStatus,
)
from storage.raw import Dialect, Plan, in_session
from storage.types import utcnow
from storage.users import find_member
from webhooks.avochato.common import (
    PAGE_SIZE,
    Caller,
    Credentials,
    caller,
    csv,
    inbox_route,
    moment,
    ok,
    page_number,
    params,
)
from webhooks.avochato.message_search import (
    Epoch,
    MessageSearch,
    ScheduledSearch,
    message_filter,
    scheduled_filter,
)
from webhooks.avochato.message_shapes import (
    MessageAnswer,
    PendingMessagesAnswer,
    SmsMessagesAnswer,
    dump,
    is_pending,
    pending_messages,
    sms_message_out,
)
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.routing import Route


def _url(value: str | None) -> str | None:
    if value is None or not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value


class SendMessage(Credentials):
    phone: str | None = Field(
        default=None, max_length=32, description="Phone number to send the message to"
    )
    contact_id: str | None = Field(
        default=None, max_length=64, description="Or the id of the contact to send it to"
    )
    message: str = Field(
        min_length=1, max_length=MAX_API_BODY, description="Text to send to the recipient"
    )
    from_: str | None = Field(
        default=None,
        alias="from",
        max_length=32,
        description="One of this inbox's numbers (E.164) to send from",
    )
    scheduled_for: Epoch | None = Field(
        default=None, description="Send at this time (epoch seconds) instead of now"
    )
    mark_addressed: bool = Field(default=False, description="Mark the conversation addressed")
    media_url: str | None = Field(default=None, max_length=2000, description="MMS attachment")
    tags: str | list[str] | None = Field(
        default=None, description="Comma-separated tags to apply to this contact"
    )
    status_callback: str | None = Field(
        default=None, max_length=2000, description="POSTed the message when its status changes"
    )
    send_as_user_id: str | None = Field(
        default=None, max_length=64, description="Send as this member of the inbox (by id)"
    )
    send_as_user_email: str | None = Field(
        default=None, max_length=254, description="Send as this member of the inbox (by email)"
    )

    @field_validator("phone", "from_")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(f"not a phone number ({exc})") from exc

    @field_validator("media_url", "status_callback")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return _url(value)

    @model_validator(mode="after")
    def _recipient(self) -> SendMessage:
        if not self.phone and not self.contact_id:
            raise ValueError("give phone or contact_id")
        return self


# --- Sending ----------------------------------------------------------------------------------


async def send_message(deps: Deps, who: Caller, body: SendMessage) -> tuple[Message, str]:
    """Send (or schedule) a team member's text through the native send; it and its contact."""
    workspace_id = who.workspace.id
    sender_user_id = who.user.id
    as_user = body.send_as_user_id or body.send_as_user_email
    to = body.phone
    async with deps.reads() as session:
        if as_user:
            found = await find_member(
                session=session, workspace_id=workspace_id, id_or_email=as_user
            )
            if found is None:
                raise NotFound(f"no team member {as_user} in this inbox")
            if not found[1].enabled:
                raise Conflict(f"{as_user} is disabled in this inbox", code="user_disabled")
            sender_user_id = found[0].id
        if body.contact_id:
            contact = await inbox_threads.contact_in(
                session=session, workspace_id=workspace_id, contact_id=body.contact_id
            )
            if contact is None:
                raise NotFound(f"no contact {body.contact_id}")
            if to is not None and to != contact.phone:
                raise HttpError(
                    422, "validation_error", "phone and contact_id name different contacts"
                )
            to = contact.phone
    assert to is not None  # the model wants a phone or a contact
    tags = csv(body.tags)
    if any(len(tag) > 100 for tag in tags):
        raise HttpError(422, "validation_error", "tags: at most 100 characters each")

    def by_person(dialect: Dialect, sent: Sent) -> Plan[None]:
        return _sent_by_person_plan(dialect, workspace_id, sent, sender_user_id, tags, body)

    sent = await send(
        deps,
        workspace_id,
        Outgoing(
            to=to,
            text=body.message,
            sender=body.from_,
            media_urls=(body.media_url,) if body.media_url else (),
            send_at=moment(body.scheduled_for, name="scheduled_for"),
            origin="avochato",
            new_thread=False,
            author=MessageAuthor.HUMAN,
        ),
        remember=by_person,
    )
    async with deps.reads() as session:
        stored = await inbox_messages.message_in(
            session=session, workspace_id=workspace_id, message_id=sent.message_id
        )
    assert stored is not None
    return stored


def _sent_by_person_plan(
    dialect: Dialect,
    workspace_id: str,
    sent: Sent,
    user_id: str,
    tags: list[str],
    body: SendMessage,
) -> Plan[None]:
    """In the send's transaction: who sent it, the callback, the thread in a person's hands
    (when it goes now), addressed, the contact's tags."""
    yield from inbox_threads.sent_by_plan(dialect, sent.message_id, user_id, body.status_callback)
    if sent.status != MessageStatus.SCHEDULED:
        yield from conversations.set_state_plan(
            dialect,
            sent.conversation_id,
            status=ConversationStatus.OPEN,
            mode=ConversationMode.HUMAN,
        )
        yield from events.event_plan(
            dialect,
            workspace_id=workspace_id,
            conversation_id=sent.conversation_id,
            type="conversation.human_reply",
            data={"message_id": sent.message_id, "user_id": user_id, "source": "avochato"},
        )
    if body.mark_addressed:
        yield from inbox_threads.addressed_plan(dialect, sent.conversation_id, utcnow())
    yield from inbox_threads.tag_contact_plan(dialect, workspace_id, sent.conversation_id, tags)


# --- Canceling and hiding ---------------------------------------------------------------------


async def delete_message(deps: Deps, who: Caller, message_id: str) -> tuple[Message, str]:
    """Cancel the message if it still waits for its time, else hide it; it, as it now is."""
    workspace_id = who.workspace.id
    reported: list[str] = []
    async with deps.sessions() as session, session.begin():
        found = await inbox_messages.message_in(
            session=session, workspace_id=workspace_id, message_id=message_id
        )
        if found is None:
            raise NotFound(f"no message {message_id}")
        message, contact_id = found
        conversation_id = message.conversation_id
        if not (message.status == MessageStatus.CANCELED and message.send_at is not None):
            reported = await in_session(
                session,
                lambda d: _delete_plan(d, workspace_id, conversation_id, message_id, who.user.id),
            )
        await session.refresh(message)
    if reported:
        deps.nudge(hooks.HOOK_JOB)
    return message, contact_id


def _delete_plan(
    dialect: Dialect, workspace_id: str, conversation_id: str, message_id: str, user_id: str
) -> Plan[list[str]]:
    """Cancel, or (when it is no longer waiting) hide; the webhooks and callbacks queued."""
    if (yield from messages.cancel_scheduled_plan(dialect, message_id)):
        yield from jobs.cancel_queued_plan(dialect, send_key(message_id))
        yield from events.event_plan(
            dialect,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            type="message.canceled",
            data={"message_id": message_id, "user_id": user_id, "source": "avochato"},
        )
        return (yield from hooks.message_status_plan(dialect, message_id))
    if (yield from inbox_messages.hide_plan(dialect, message_id)):
        yield from events.event_plan(
            dialect,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            type="message.hidden",
            data={"message_id": message_id, "user_id": user_id, "source": "avochato"},
        )
    return []


# --- Handlers ---------------------------------------------------------------------------------


@inbox_route
async def create_message(request: web.Request) -> web.Response:
    who = await caller(request)
    body = SendMessage.model_validate(await params(request))
    deps = request.app[DEPS]
    message, contact_id = await send_message(deps, who, body)
    return ok({"message": await _shown(deps, message, contact_id)})


@inbox_route
async def get_message(request: web.Request) -> web.Response:
    who = await caller(request)
    message_id = request.match_info["id"]
    async with request.app[DEPS].reads() as session:
        found = await inbox_messages.message_in(
            session=session, workspace_id=who.workspace.id, message_id=message_id
        )
    if found is None:
        raise NotFound(f"no message {message_id}")
    return ok({"message": await _shown(request.app[DEPS], *found)})


@inbox_route
async def list_messages(request: web.Request) -> web.Response:
    who = await caller(request)
    p = await params(request)
    query = MessageSearch.model_validate(p)
    page = page_number(p)
    async with request.app[DEPS].reads() as session:
        found = await inbox_messages.find_messages(
            session=session,
            workspace_id=who.workspace.id,
            where=message_filter(query),
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    shown = [dump(sms_message_out(message, contact_id)) for message, contact_id in found]
    return ok({"messages": shown}, page=page)


@inbox_route
async def list_scheduled(request: web.Request) -> web.Response:
    who = await caller(request)
    p = await params(request)
    query = ScheduledSearch.model_validate(p)
    page = page_number(p)
    async with request.app[DEPS].reads() as session:
        found = await inbox_messages.find_messages(
            session=session,
            workspace_id=who.workspace.id,
            where=scheduled_filter(query),
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        shown = await pending_messages(session, found)
    return ok({"messages": [dump(message) for message in shown]}, page=page)


@inbox_route
async def remove_message(request: web.Request) -> web.Response:
    who = await caller(request)
    deps = request.app[DEPS]
    message, contact_id = await delete_message(deps, who, request.match_info["id"])
    return ok({"message": await _shown(deps, message, contact_id)})


async def _shown(deps: Deps, message: Message, contact_id: str) -> dict[str, Any]:
    """The message as a `PendingMessage` while it waits (or once canceled), else as sent."""
    if not is_pending(message):
        return dump(sms_message_out(message, contact_id))
    async with deps.reads() as session:
        [pending] = await pending_messages(session, [(message, contact_id)])
    return dump(pending)


def routes() -> list[Route]:
    base = "/compat/avochato/v1/messages"
    return [
        Route(
            "DELETE",
            base + "/{id}",
            remove_message,
            "Cancel a scheduled message; one already sent is hidden from the inbox",
            "avochato",
            auth="avochato",
            body=Credentials,
            responses={200: MessageAnswer},
        ),
        # Before `/{id}`: "scheduled" is not a message id.
        Route(
            "GET",
            base + "/scheduled",
            list_scheduled,
            "Search the messages scheduled to go (by default from now to a year on)",
            "avochato",
            auth="avochato",
            query=ScheduledSearch,
            responses={200: PendingMessagesAnswer},
        ),
        Route(
            "GET",
            base + "/{id}",
            get_message,
            "A message by its id",
            "avochato",
            auth="avochato",
            query=Credentials,
            responses={200: MessageAnswer},
        ),
        Route(
            "GET",
            base,
            list_messages,
            "List or search the inbox's messages, newest first",
            "avochato",
            auth="avochato",
            query=MessageSearch,
            responses={200: SmsMessagesAnswer},
        ),
        Route(
            "POST",
            base,
            create_message,
            "Send a message (or schedule it) to a phone number or a contact, as a team member",
            "avochato",
            auth="avochato",
            body=SendMessage,
            responses={200: MessageAnswer},
        ),
    ]
