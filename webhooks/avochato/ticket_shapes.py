"""Tickets as the inbox API shows them.

| Avochato                        | here                                                       |
|---------------------------------|------------------------------------------------------------|
| ticket `id`                     | the conversation's id (`conv_…`); `uuid` derived from it   |
| `contact`                       | the conversation's contact's id                            |
| `status` Open / Pending / Closed| open / pending (waiting for a person) / closed; New: open  |
| `user_id` (the owner)           | the conversation's assignee, a member of the inbox         |
| `unaddressed`                   | the latest message is the customer's, unanswered since the |
|                                 | thread was last marked addressed                           |
| `helper_bot`                    | the agent answers the thread (mode agent, not human)       |
| `summary`                       | the thread's running summary                               |
| `origin`                        | always `Avochato` (the one value the inbox documents)      |
| `closed_at` (earlier tickets)   | a closed thread's last change                              |
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from storage.inbox_threads import EarlierTicket, Ticket
from storage.models import ConversationMode, ConversationStatus
from webhooks.avochato.common import epoch
from webhooks.avochato.message_shapes import element_uuid


class TicketOut(BaseModel):
    id: str
    uuid: str
    contact: str
    user_id: str | None
    unaddressed: bool
    status: Literal["Open", "Pending", "Closed"]
    origin: str
    created_at: float
    device_type: None = None
    device: None = None
    helper_bot: bool
    helper_bot_source_account: None = None
    os: None = None
    os_version: None = None
    browser: None = None
    browser_version: None = None
    ip: None = None
    widget_referrer_url: None = None
    active_survey_id: None = None
    summary: str | None
    summary_updated_at: float | None


class Tickets(BaseModel):
    tickets: list[TicketOut]


class TicketsAnswer(BaseModel):
    status: int
    data: Tickets


class TicketsPage(BaseModel):
    status: int
    data: Tickets
    page: int


class TicketList(BaseModel):
    tickets: list[TicketOut]
    total_count: int


class TicketListAnswer(BaseModel):
    status: int
    data: TicketList
    page: int
    limit: int


class Owner(BaseModel):
    id: str
    name: str | None


class EarlierTicketOut(BaseModel):
    id: str
    uuid: str
    channel: Literal["sms"] = "sms"
    contact: str
    created_at: float
    closed_at: float | None
    user: Owner | None
    device_type: None = None
    option_data: None = None
    tags: list[str]
    account_subdomain: str | None


class EarlierTickets(BaseModel):
    tickets: list[EarlierTicketOut]


class EarlierTicketsAnswer(BaseModel):
    status: int
    data: EarlierTickets


def ticket_out(ticket: Ticket) -> TicketOut:
    conversation = ticket.conversation
    return TicketOut(
        id=conversation.id,
        uuid=element_uuid(conversation.id),
        contact=conversation.contact_id,
        user_id=conversation.assignee_user_id,
        unaddressed=ticket.unaddressed,
        status=_shown_status(conversation.status),
        origin="Avochato",
        created_at=epoch(conversation.created_at) or 0.0,
        helper_bot=conversation.mode == ConversationMode.AGENT,
        summary=conversation.summary,
        # The summary is rewritten with the thread: no later than its last change.
        summary_updated_at=epoch(conversation.updated_at) if conversation.summary else None,
    )


def _shown_status(status: str) -> Literal["Open", "Pending", "Closed"]:
    if status == ConversationStatus.PENDING:
        return "Pending"
    return "Closed" if status == ConversationStatus.CLOSED else "Open"


def earlier_ticket_out(earlier: EarlierTicket) -> EarlierTicketOut:
    conversation = earlier.conversation
    closed = conversation.status == ConversationStatus.CLOSED
    owner = earlier.owner
    return EarlierTicketOut(
        id=conversation.id,
        uuid=element_uuid(conversation.id),
        contact=conversation.contact_id,
        created_at=epoch(conversation.created_at) or 0.0,
        closed_at=epoch(conversation.updated_at) if closed else None,
        user=None if owner is None else Owner(id=owner.id, name=owner.name or owner.email),
        tags=earlier.tags,
        account_subdomain=earlier.subdomain,
    )
