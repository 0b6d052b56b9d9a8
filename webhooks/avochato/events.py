"""Events (`/v1/…/events`): log a custom event (type, context, revenue) into a conversation's
stream, by contact, phone or ticket; and read tickets' streams.

A logged event is the same row the agent's `log_event` tool writes (`custom.<type>`), so a CRM
reading a stream sees what the agent recorded beside what the team did. An event for a contact
lands in their live ticket (else their latest; a contact with none gets one, on the inbox's
first number); an event by phone makes the contact when the number is new.

A stream is the tickets' messages and events together, newest first, shown as the inbox shows
them:

| element          | from                                                                      |
|------------------|---------------------------------------------------------------------------|
| `SmsMessage`     | a message (`PendingMessage` while it waits for its time, or once canceled)|
| `CustomEvent`    | a custom event (`type` without `custom.`), or what else happened in the   |
|                  | thread: an appointment confirmed, a hand-off, a tag… (`type` is ours)     |
| `StatusChange`   | the ticket started, reopened, set pending or closed                       |
| `OwnerChange`    | the ticket given to a member, or taken from one                           |

Messages' own bookkeeping (scheduled, canceled, webhook deliveries) is left out: the message
shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.deps import Deps
from agent.errors import Conflict, NotFound
from storage import contacts, conversations, events, inbox_threads
from storage.models import Contact, Conversation, Event, Message
from storage.raw import in_session
from storage.workspaces import sender_numbers
from webhooks.avochato.common import (
    PAGE_SIZE,
    Caller,
    Credentials,
    Paged,
    caller,
    epoch,
    id_list,
    inbox_route,
    ok,
    page_number,
    params,
)
from webhooks.avochato.message_search import phone_of
from webhooks.avochato.message_shapes import (
    PendingMessageOut,
    SmsMessageOut,
    dump,
    is_pending,
    pending_messages,
    sms_message_out,
)
from webhooks.avochato.tickets import OWNER_EVENT
from webhooks.keys import DEPS
from webhooks.routing import Route

CUSTOM = "custom."
# Our events that are a ticket's status changing, and the status they leave it in.
_STATUS_CHANGES: dict[str, Literal["Open", "Pending", "Closed"]] = {
    "conversation.started": "Open",
    "conversation.reopened": "Open",
    "conversation.pending": "Pending",
    "conversation.closed": "Closed",
}


# --- What the routes take ---------------------------------------------------------------------


class EventIn(Credentials):
    type: str = Field(
        min_length=1, max_length=60, description="Type of event to log: click, sale, etc."
    )
    context: str | None = Field(
        default=None, max_length=2000, description="Context to save regarding the event"
    )
    revenue: float | None = Field(
        default=None,
        ge=-1e9,
        le=1e9,
        allow_inf_nan=False,
        description="Value created for your team from this event",
    )

    @field_validator("type")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable text")
        return value


class PhoneEventIn(EventIn):
    phone: str = Field(min_length=1, max_length=32, description="Phone number of the Contact")


# --- What they answer -------------------------------------------------------------------------


class CustomEventOut(BaseModel):
    user_id: str | None
    account_id: str
    ticket_id: str
    contact_id: str
    qa_keyword_id: None = None
    type: str
    context: str | None
    revenue: float | None
    event_id: str
    element_id: str
    element_type: Literal["CustomEvent"] = "CustomEvent"
    sent_at: float


class StatusChangeOut(BaseModel):
    account_id: str
    ticket_id: str
    user_id: str | None
    status: Literal["Open", "Pending", "Closed"]
    event_id: str
    element_id: str
    element_type: Literal["StatusChange"] = "StatusChange"
    sent_at: float


class OwnerChangeOut(BaseModel):
    account_id: str
    ticket_id: str
    user_id: str | None
    owner_id: str | None
    old_owner_id: str | None
    event_id: str
    element_id: str
    element_type: Literal["OwnerChange"] = "OwnerChange"
    sent_at: float


class OneEvent(BaseModel):
    event: CustomEventOut


class EventAnswer(BaseModel):
    status: int
    data: OneEvent


Element = CustomEventOut | StatusChangeOut | OwnerChangeOut | SmsMessageOut | PendingMessageOut


class Elements(BaseModel):
    events: list[Element]


class StreamAnswer(BaseModel):
    status: int
    data: Elements
    page: int
    limit: int


def event_out(event: Event, contact_id: str) -> BaseModel:
    """One of our events as the element the inbox shows."""
    data = event.data if isinstance(event.data, dict) else {}
    user_id = data.get("user_id") if isinstance(data.get("user_id"), str) else None
    common: dict[str, Any] = {
        "account_id": event.workspace_id,
        "ticket_id": event.conversation_id,
        "user_id": user_id,
        "event_id": event.id,
        "element_id": event.id,
        "sent_at": epoch(event.created_at) or 0.0,
    }
    if event.type in _STATUS_CHANGES:
        return StatusChangeOut(status=_STATUS_CHANGES[event.type], **common)
    if event.type == OWNER_EVENT:
        return OwnerChangeOut(
            owner_id=data.get("owner_id"), old_owner_id=data.get("old_owner_id"), **common
        )
    context = data.get("context") or data.get("reason")
    return CustomEventOut(
        contact_id=contact_id,
        type=event.type.removeprefix(CUSTOM),
        context=context if isinstance(context, str) else None,
        revenue=event.revenue,
        **common,
    )


# --- Logging ----------------------------------------------------------------------------------


async def log_custom_event(
    deps: Deps,
    who: Caller,
    body: EventIn,
    *,
    ticket_id: str | None = None,
    contact_id: str | None = None,
    phone: str | None = None,
) -> tuple[Event, str]:
    """Append the event to the ticket named, or the contact's (by id or phone); it, and the
    contact's id."""
    workspace_id = who.workspace.id
    async with deps.sessions() as session, session.begin():
        if ticket_id is not None:
            conversation = await conversations.get_conversation(
                session=session, conversation_id=ticket_id, workspace_id=workspace_id
            )
            if conversation is None:
                raise NotFound(f"no ticket {ticket_id}")
            conversation_id, whose = conversation.id, conversation.contact_id
        else:
            if phone is not None:
                contact_id = await contacts.contact_id_for_phone(
                    session=session, workspace_id=workspace_id, phone=phone
                )
            assert contact_id is not None
            contact = await inbox_threads.contact_in(
                session=session, workspace_id=workspace_id, contact_id=contact_id
            )
            if contact is None:
                raise NotFound(f"no contact {contact_id}")
            conversation_id, whose = await _ticket_of(session, workspace_id, contact), contact.id
        data = {"context": body.context, "source": "avochato", "user_id": who.user.id}
        event_id = await in_session(
            session,
            lambda d: events.event_plan(
                d,
                workspace_id=workspace_id,
                conversation_id=conversation_id,
                type=CUSTOM + body.type,
                data=data,
                revenue=body.revenue,
            ),
        )
        event = await session.get(Event, event_id)
        assert event is not None
    return event, whose


async def _ticket_of(session: AsyncSession, workspace_id: str, contact: Contact) -> str:
    """The contact's ticket: the live one, else the latest; a new one when they have none."""
    found = await inbox_threads.ticket_for_contact(
        session=session, workspace_id=workspace_id, contact_id=contact.id
    )
    if found is not None:
        return found.id
    numbers = await sender_numbers(session=session, workspace_id=workspace_id)
    if not numbers:
        raise Conflict(
            "this inbox has no number to hold a conversation with the contact",
            code="no_sender_number",
        )
    conversation_id = await conversations.insert_conversation(
        session=session,
        workspace_id=workspace_id,
        contact_id=contact.id,
        sender_number=numbers[0].number,
        provider=numbers[0].provider,
    )
    await in_session(
        session,
        lambda d: events.event_plan(
            d,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            type="conversation.started",
            data={"source": "avochato"},
        ),
    )
    return conversation_id


# --- Reading ----------------------------------------------------------------------------------


async def stream_page(deps: Deps, who: Caller, ids: Sequence[str], page: int) -> list[BaseModel]:
    """A page of the tickets' stream, newest first; 404 naming the tickets the inbox has not."""
    async with deps.reads() as session:
        found = await inbox_threads.conversations_by_id(
            session=session, workspace_id=who.workspace.id, ids=ids
        )
        missing = [ident for ident in ids if ident not in found]
        if missing:
            raise NotFound(f"no ticket {', '.join(missing)}", details={"ids": missing})
        items = await inbox_threads.stream(
            session=session,
            conversation_ids=ids,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        waiting = [
            (item, _contact(found, item))
            for item in items
            if isinstance(item, Message) and is_pending(item)
        ]
        pending = {shown.event_id: shown for shown in await pending_messages(session, waiting)}
    shown: list[BaseModel] = []
    for item in items:
        contact_id = _contact(found, item)
        if isinstance(item, Event):
            shown.append(event_out(item, contact_id))
        elif item.id in pending:
            shown.append(pending[item.id])
        else:
            shown.append(sms_message_out(item, contact_id))
    return shown


def _contact(found: dict[str, Conversation], item: Event | Message) -> str:
    return found[item.conversation_id].contact_id


# --- Handlers ---------------------------------------------------------------------------------


@inbox_route
async def contact_event(request: web.Request) -> web.Response:
    who = await caller(request)
    body = EventIn.model_validate(await params(request))
    event, contact_id = await log_custom_event(
        request.app[DEPS], who, body, contact_id=request.match_info["id"]
    )
    return ok({"event": dump(event_out(event, contact_id))})


@inbox_route
async def phone_event(request: web.Request) -> web.Response:
    who = await caller(request)
    body = PhoneEventIn.model_validate(await params(request))
    event, contact_id = await log_custom_event(
        request.app[DEPS], who, body, phone=phone_of(body.phone, name="phone")
    )
    return ok({"event": dump(event_out(event, contact_id))})


@inbox_route
async def ticket_event(request: web.Request) -> web.Response:
    who = await caller(request)
    body = EventIn.model_validate(await params(request))
    event, contact_id = await log_custom_event(
        request.app[DEPS], who, body, ticket_id=request.match_info["id"]
    )
    return ok({"event": dump(event_out(event, contact_id))})


@inbox_route
async def ticket_events(request: web.Request) -> web.Response:
    who = await caller(request)
    page = page_number(await params(request))
    ids = id_list(request.match_info["ids"])
    shown = await stream_page(request.app[DEPS], who, ids, page)
    return ok({"events": [dump(item) for item in shown]}, page=page, limit=PAGE_SIZE)


def routes() -> list[Route]:
    base = "/compat/avochato/v1"
    return [
        Route(
            "POST",
            base + "/contacts/{id}/events",
            contact_event,
            "Log an event (type, context, revenue) in a contact's conversation",
            "avochato",
            auth="avochato",
            body=EventIn,
            responses={200: EventAnswer},
        ),
        Route(
            "POST",
            base + "/events",
            phone_event,
            "Log an event in the conversation with a phone number",
            "avochato",
            auth="avochato",
            body=PhoneEventIn,
            responses={200: EventAnswer},
        ),
        Route(
            "POST",
            base + "/tickets/{id}/events",
            ticket_event,
            "Log an event in a ticket",
            "avochato",
            auth="avochato",
            body=EventIn,
            responses={200: EventAnswer},
        ),
        Route(
            "GET",
            base + "/tickets/{ids}/events",
            ticket_events,
            "Tickets' messages and events, newest first",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: StreamAnswer},
        ),
    ]
