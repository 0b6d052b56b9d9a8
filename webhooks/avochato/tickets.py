"""Tickets (`/v1/tickets…`): the inbox's conversations, fetched, listed, searched and updated;
their shapes are in `ticket_shapes`.

`PUT /v1/tickets/:ids` changes all the tickets or none: `status` (Open, Pending, Closed, New;
Closed also marks the ticket addressed; Addressed only marks it so), `unaddressed`, and the
owner: `user_id` (a member's id, `autoassign` or `unassign`) or `user_email`. `autoassign` hands
the tickets, in turn, to the enabled members assigned one longest ago (or never), and leaves the
owner as it is when the inbox has none. Each change is recorded in the ticket's events.

Search (`query` of `GET /v1/tickets`): words must each be in the contact's name, phone or email
(or be the ticket's id); `field:value` terms filter: `status:Open` (several: `status:Open,Pending`),
`unaddressed:true`, `user_id:<id>` (`user_id:none`: nobody's), `contact_id:<id>`, `phone:<number>`,
`tag:<tag>`, `mode:agent|human`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.deps import Deps
from agent.errors import Conflict, NotFound
from storage import conversations, events, inbox_threads
from storage.inbox_threads import Ticket, TicketFilter
from storage.models import Conversation, ConversationStatus
from storage.raw import Dialect, Plan, in_session
from storage.types import utcnow
from storage.users import find_member
from webhooks.avochato.common import (
    PAGE_SIZE,
    Caller,
    Credentials,
    Paged,
    caller,
    id_list,
    inbox_route,
    ok,
    page_number,
    params,
    truthy,
)
from webhooks.avochato.message_search import phone_of, search_terms
from webhooks.avochato.ticket_shapes import (
    EarlierTicketsAnswer,
    TicketListAnswer,
    TicketsAnswer,
    TicketsPage,
    earlier_ticket_out,
    ticket_out,
)
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.routing import Route

_STATUSES = {
    "new": ConversationStatus.OPEN,
    "open": ConversationStatus.OPEN,
    "pending": ConversationStatus.PENDING,
    "closed": ConversationStatus.CLOSED,
}
_LIVE = (ConversationStatus.OPEN, ConversationStatus.PENDING)
# The event each status change is recorded as (the thread's stream shows it as a StatusChange).
STATUS_EVENTS = {
    ConversationStatus.OPEN: "conversation.reopened",
    ConversationStatus.PENDING: "conversation.pending",
    ConversationStatus.CLOSED: "conversation.closed",
}
OWNER_EVENT = "conversation.assigned"
_SEARCH_FIELDS = frozenset(
    {"status", "unaddressed", "user_id", "contact_id", "phone", "tag", "mode"}
)


# --- What the routes take ---------------------------------------------------------------------


class TicketChange(Credentials):
    status: str | None = Field(
        default=None,
        max_length=20,
        description="Open, Pending or Closed (New: Open; Addressed: only mark it addressed)",
    )
    user_id: str | None = Field(
        default=None,
        max_length=254,
        description="The new owner's user id, `autoassign` (round-robin) or `unassign`",
    )
    user_email: str | None = Field(
        default=None, max_length=254, description="The new owner's email"
    )
    unaddressed: bool | None = Field(
        default=None, description="Whether the ticket stays unaddressed"
    )


class TicketSearch(Paged):
    query: str | None = Field(
        default=None, max_length=500, description="String to search tickets with"
    )


# --- Updating ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """What a PUT asks of every ticket it names."""

    status: str | None
    # None: leave as is; a time: addressed then; "never": as never answered.
    addressed: datetime | Literal["never"] | None
    # None: leave the owner; else one owner per ticket (None in it: nobody), in order.
    owners: list[str | None] | None


async def update_tickets(
    deps: Deps, who: Caller, ids: Sequence[str], body: TicketChange
) -> list[Ticket]:
    """Apply the change to all the tickets, in one transaction; them, in the order named."""
    workspace_id = who.workspace.id
    async with deps.sessions() as session, session.begin():
        found = await inbox_threads.conversations_by_id(
            session=session, workspace_id=workspace_id, ids=ids, lock=True
        )
        missing = [ident for ident in ids if ident not in found]
        if missing:
            raise NotFound(f"no ticket {', '.join(missing)}", details={"ids": missing})
        change = await _change(session, who, body, len(ids))
        threads = [found[ident] for ident in ids]
        await in_session(session, lambda d: _tickets_plan(d, who, threads, change))
        tickets = await inbox_threads.find_tickets(
            session=session,
            workspace_id=workspace_id,
            where=TicketFilter(ids=ids),
            limit=len(ids),
        )
    by_id = {ticket.conversation.id: ticket for ticket in tickets}
    return [by_id[ident] for ident in ids]


async def _change(session: AsyncSession, who: Caller, body: TicketChange, count: int) -> _Change:
    status: str | None = None
    addressed: datetime | Literal["never"] | None = None
    now = utcnow()
    if body.status is not None and body.status.strip():
        key = body.status.strip().lower()
        if key == "addressed":
            addressed = now
        elif key in _STATUSES:
            status = _STATUSES[key]
            if status == ConversationStatus.CLOSED:
                addressed = now
        else:
            raise HttpError(
                422, "validation_error", "status must be Open, Pending, Closed, New or Addressed"
            )
    if body.unaddressed is not None:
        addressed = "never" if body.unaddressed else now
    owners = await _owners(session, who, body, count)
    return _Change(status, addressed, owners)


async def _owners(
    session: AsyncSession, who: Caller, body: TicketChange, count: int
) -> list[str | None] | None:
    """One owner per ticket, in order (None in it: nobody); None: leave the owners be."""
    workspace_id = who.workspace.id
    named = (body.user_id or "").strip() or (body.user_email or "").strip()
    if not named:
        return None
    if named.lower() == "unassign":
        return [None] * count
    if named.lower() == "autoassign":
        roster = await inbox_threads.roster(session=session, workspace_id=workspace_id)
        if not roster:
            return None
        return [roster[index % len(roster)].user_id for index in range(count)]
    found = await find_member(session=session, workspace_id=workspace_id, id_or_email=named)
    if found is None:
        raise NotFound(f"no team member {named} in this inbox")
    if not found[1].enabled:
        raise Conflict(f"{named} is disabled in this inbox", code="user_disabled")
    return [found[0].id] * count


def _tickets_plan(
    dialect: Dialect, who: Caller, threads: Sequence[Conversation], change: _Change
) -> Plan[None]:
    workspace_id = who.workspace.id
    data = {"source": "avochato", "user_id": who.user.id}
    now = utcnow()
    for index, conversation in enumerate(threads):
        conversation_id, was_owner = conversation.id, conversation.assignee_user_id
        status = change.status if change.status != conversation.status else None
        if status is not None:
            if status in _LIVE and conversation.status == ConversationStatus.CLOSED:
                live = yield from inbox_threads.other_live_plan(conversation)
                if live is not None:
                    raise Conflict(
                        f"{live} is the live ticket with this contact; close it first",
                        code="another_thread_live",
                        details={"ticket_id": conversation_id},
                    )
            yield from conversations.set_state_plan(
                dialect, conversation_id, status=status, mode=None
            )
            yield from events.event_plan(
                dialect,
                workspace_id=workspace_id,
                conversation_id=conversation_id,
                type=STATUS_EVENTS[ConversationStatus(status)],
                data={**data, "status": status},
            )
        owner = was_owner if change.owners is None else change.owners[index]
        if owner != was_owner:
            yield from inbox_threads.owner_plan(dialect, conversation_id, owner)
            yield from events.event_plan(
                dialect,
                workspace_id=workspace_id,
                conversation_id=conversation_id,
                type=OWNER_EVENT,
                data={**data, "owner_id": owner, "old_owner_id": was_owner},
            )
        if change.owners is not None and owner is not None:
            # Handed a ticket (even one they had): their turn in the roster has come. A moment
            # apart per ticket, so the roster keeps the order they were handed out in.
            at = now + timedelta(microseconds=index)
            yield from inbox_threads.assigned_plan(dialect, workspace_id, owner, at)
        if change.addressed is not None:
            when = None if change.addressed == "never" else change.addressed
            yield from inbox_threads.addressed_plan(dialect, conversation_id, when)


# --- Finding ----------------------------------------------------------------------------------


def ticket_filter(query: str | None) -> TicketFilter:
    words, terms = search_terms(query, _SEARCH_FIELDS)
    statuses: list[str] = []
    for name in (terms.get("status") or "").split(","):
        if name.strip():
            status = _STATUSES.get(name.strip().lower())
            if status is None:
                raise HttpError(422, "validation_error", "status: Open, Pending, Closed or New")
            statuses.append(status)
    mode = terms.get("mode")
    if mode is not None and mode.lower() not in ("agent", "human"):
        raise HttpError(422, "validation_error", "mode: agent or human")
    owner = terms.get("user_id")
    return TicketFilter(
        statuses=statuses,
        unaddressed=(
            truthy(terms["unaddressed"], name="unaddressed") if "unaddressed" in terms else None
        ),
        owner=None if owner is None else ("" if owner.lower() in ("none", "null") else owner),
        contact_id=terms.get("contact_id"),
        phone=phone_of(terms["phone"], name="phone") if terms.get("phone") else None,
        tag=terms.get("tag"),
        mode=mode.lower() if mode else None,
        words=words,
    )


async def tickets_named(deps: Deps, who: Caller, ids: Sequence[str]) -> list[Ticket]:
    """The workspace's tickets by id, in the order named; 404 naming those it has not."""
    async with deps.reads() as session:
        found = await inbox_threads.find_tickets(
            session=session,
            workspace_id=who.workspace.id,
            where=TicketFilter(ids=ids),
            limit=len(ids),
        )
    by_id = {ticket.conversation.id: ticket for ticket in found}
    missing = [ident for ident in ids if ident not in by_id]
    if missing:
        raise NotFound(f"no ticket {', '.join(missing)}", details={"ids": missing})
    return [by_id[ident] for ident in ids]


# --- Handlers ---------------------------------------------------------------------------------


@inbox_route
async def update(request: web.Request) -> web.Response:
    who = await caller(request)
    body = TicketChange.model_validate(await params(request))
    ids = id_list(request.match_info["ids"])
    tickets = await update_tickets(request.app[DEPS], who, ids, body)
    return ok({"tickets": [ticket_out(t).model_dump(mode="json") for t in tickets]})


@inbox_route
async def previous(request: web.Request) -> web.Response:
    who = await caller(request)
    ticket_id = request.match_info["id"]
    async with request.app[DEPS].reads() as session:
        conversation = await conversations.get_conversation(
            session=session, conversation_id=ticket_id, workspace_id=who.workspace.id
        )
        if conversation is None:
            raise NotFound(f"no ticket {ticket_id}")
        earlier = await inbox_threads.previous_tickets(
            session=session, conversation=conversation, limit=PAGE_SIZE
        )
    shown = [earlier_ticket_out(e).model_dump(mode="json") for e in earlier]
    return ok({"tickets": shown})


@inbox_route
async def fetch(request: web.Request) -> web.Response:
    who = await caller(request)
    page = page_number(await params(request))
    ids = id_list(request.match_info["ids"])
    tickets = await tickets_named(request.app[DEPS], who, ids)
    shown = tickets[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return ok({"tickets": [ticket_out(t).model_dump(mode="json") for t in shown]}, page=page)


@inbox_route
async def search(request: web.Request) -> web.Response:
    who = await caller(request)
    p = await params(request)
    query = TicketSearch.model_validate(p)
    page = page_number(p)
    where = ticket_filter(query.query)
    async with request.app[DEPS].reads() as session:
        found = await inbox_threads.find_tickets(
            session=session,
            workspace_id=who.workspace.id,
            where=where,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        total = await inbox_threads.count_tickets(
            session=session, workspace_id=who.workspace.id, where=where
        )
    shown = [ticket_out(t).model_dump(mode="json") for t in found]
    return ok({"tickets": shown, "total_count": total}, page=page, limit=PAGE_SIZE)


def routes() -> list[Route]:
    base = "/compat/avochato/v1/tickets"
    return [
        Route(
            "PUT",
            base + "/{ids}",
            update,
            "Change tickets: status, addressed, owner (a member, round-robin, or nobody)",
            "avochato",
            auth="avochato",
            body=TicketChange,
            responses={200: TicketsAnswer},
        ),
        Route(
            "GET",
            base + "/{id}/previous",
            previous,
            "The contact's earlier tickets, newest first",
            "avochato",
            auth="avochato",
            query=Credentials,
            responses={200: EarlierTicketsAnswer},
        ),
        Route(
            "GET",
            base + "/{ids}",
            fetch,
            "Tickets by id (comma-separated)",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: TicketsPage},
        ),
        Route(
            "GET",
            base,
            search,
            "List or search the inbox's tickets, latest activity first",
            "avochato",
            auth="avochato",
            query=TicketSearch,
            responses={200: TicketListAnswer},
        ),
    ]
