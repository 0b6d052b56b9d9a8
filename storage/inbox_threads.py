"""The inbox's view of threads: tickets (conversations) with their owners and whether they wait
for an answer, and their streams of messages and events. Messages on their own are in
`storage.inbox_messages`.

Every search is one SQL statement per page (and one to count, where a total is shown), in either
dialect; nothing is filtered after loading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    func,
    literal_column,
    not_,
    or_,
    union_all,
)
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Event,
    Membership,
    Message,
    MessageDirection,
    MessageStatus,
    User,
    Workspace,
)
from storage.raw import Dialect, Plan, marks, parse_json
from storage.types import utcnow

# Outbound messages that do not answer the customer: not sent yet, or never.
_NOT_AN_ANSWER = (
    MessageStatus.SCHEDULED,
    MessageStatus.CANCELED,
    MessageStatus.FAILED,
    MessageStatus.UNDELIVERED,
)
# Events a thread's stream leaves out: its messages are shown themselves, and deliveries of
# webhooks are the service's own bookkeeping.
_UNSHOWN_PREFIXES = ("message.", "webhook.")
_UNSHOWN = ("conversation.human_reply",)


def contains(text: str) -> str:
    """`%text%` for LIKE with `\\` as the escape character."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- Tickets ----------------------------------------------------------------------------------


def unaddressed() -> ColumnElement[bool]:
    """Whether the thread waits for an answer: its latest message is the customer's, newer
    than any answer sent and than the moment it was last marked addressed."""
    last_in = (
        select(func.max(col(Message.created_at)))
        .where(
            col(Message.conversation_id) == col(Conversation.id),
            col(Message.direction) == MessageDirection.INBOUND,
        )
        .correlate(Conversation)
        .scalar_subquery()
    )
    last_out = (
        select(func.max(col(Message.created_at)))
        .where(
            col(Message.conversation_id) == col(Conversation.id),
            col(Message.direction) == MessageDirection.OUTBOUND,
            col(Message.status).not_in([str(s) for s in _NOT_AN_ANSWER]),
        )
        .correlate(Conversation)
        .scalar_subquery()
    )
    addressed = col(Conversation.addressed_at)
    return and_(
        last_in.is_not(None),
        or_(last_out.is_(None), last_in > last_out),
        or_(addressed.is_(None), last_in > addressed),
    )


@dataclass(frozen=True)
class TicketFilter:
    ids: Sequence[str] = ()
    statuses: Sequence[str] = ()
    unaddressed: bool | None = None
    # An owner's user id; "" for threads nobody owns.
    owner: str | None = None
    contact_id: str | None = None
    phone: str | None = None
    tag: str | None = None
    mode: str | None = None
    # Each must be in the contact's name, phone or email, or be the ticket's id.
    words: Sequence[str] = ()


@dataclass(frozen=True)
class Ticket:
    conversation: Conversation
    unaddressed: bool


def _ticket_conditions(workspace_id: str, where: TicketFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [col(Conversation.workspace_id) == workspace_id]
    if where.ids:
        conditions.append(col(Conversation.id).in_(list(where.ids)))
    if where.statuses:
        conditions.append(col(Conversation.status).in_(list(where.statuses)))
    if where.unaddressed is not None:
        flag = unaddressed()
        conditions.append(flag if where.unaddressed else not_(flag))
    if where.owner is not None:
        owner = col(Conversation.assignee_user_id)
        conditions.append(owner.is_(None) if where.owner == "" else owner == where.owner)
    if where.contact_id is not None:
        conditions.append(col(Conversation.contact_id) == where.contact_id)
    if where.mode is not None:
        conditions.append(col(Conversation.mode) == where.mode)
    if where.phone is not None:
        conditions.append(col(Contact.phone) == where.phone)
    if where.tag is not None:
        # Tags are a JSON list of strings written compactly: the tag's JSON text is in it
        # exactly when the tag is.
        conditions.append(
            cast(col(Contact.tags), String).like(contains(json.dumps(where.tag)), escape="\\")
        )
    for word in where.words:
        pattern = contains(word)
        conditions.append(
            or_(
                col(Contact.first_name).ilike(pattern, escape="\\"),
                col(Contact.last_name).ilike(pattern, escape="\\"),
                col(Contact.phone).ilike(pattern, escape="\\"),
                col(Contact.email).ilike(pattern, escape="\\"),
                col(Conversation.id) == word,
            )
        )
    return conditions


async def find_tickets(
    *,
    session: AsyncSession,
    workspace_id: str,
    where: TicketFilter,
    limit: int,
    offset: int = 0,
) -> list[Ticket]:
    """The workspace's tickets that match, latest activity first."""
    statement = (
        select(Conversation, unaddressed().label("unaddressed"))
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .where(*_ticket_conditions(workspace_id, where))
        .order_by(col(Conversation.last_message_at).desc(), col(Conversation.id).desc())
        .limit(limit)
        .offset(offset)
    )
    # Fresh rows: the caller may have just changed them in this transaction.
    found = await session.exec(statement, execution_options={"populate_existing": True})
    return [Ticket(conversation, bool(flag)) for conversation, flag in found]


async def count_tickets(*, session: AsyncSession, workspace_id: str, where: TicketFilter) -> int:
    statement = (
        select(func.count())
        .select_from(Conversation)
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .where(*_ticket_conditions(workspace_id, where))
    )
    return int((await session.exec(statement)).one())


async def conversations_by_id(
    *, session: AsyncSession, workspace_id: str, ids: Sequence[str], lock: bool = False
) -> dict[str, Conversation]:
    """The workspace's conversations among `ids` (locked for the transaction with `lock`)."""
    statement = select(Conversation).where(
        col(Conversation.workspace_id) == workspace_id, col(Conversation.id).in_(list(ids))
    )
    if lock:
        statement = statement.order_by(col(Conversation.id)).with_for_update()
    found = await session.exec(statement, execution_options={"populate_existing": True})
    return {conversation.id: conversation for conversation in found}


@dataclass(frozen=True)
class EarlierTicket:
    conversation: Conversation
    owner: User | None
    tags: list[str]
    subdomain: str | None


async def previous_tickets(
    *, session: AsyncSession, conversation: Conversation, limit: int
) -> list[EarlierTicket]:
    """The contact's threads started before this one, newest first, with their owners."""
    statement = (
        select(Conversation, User, Contact.tags, Workspace.subdomain)
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
        .join(Workspace, col(Workspace.id) == col(Conversation.workspace_id))
        .outerjoin(User, col(User.id) == col(Conversation.assignee_user_id))
        .where(
            col(Conversation.workspace_id) == conversation.workspace_id,
            col(Conversation.contact_id) == conversation.contact_id,
            col(Conversation.id) != conversation.id,
            col(Conversation.created_at) <= conversation.created_at,
        )
        .order_by(col(Conversation.created_at).desc(), col(Conversation.id).desc())
        .limit(limit)
    )
    found = await session.exec(statement)
    return [
        EarlierTicket(thread, owner, list(parse_json(tags) or []), subdomain)
        for thread, owner, tags, subdomain in found
    ]


async def roster(*, session: AsyncSession, workspace_id: str) -> list[Membership]:
    """The enabled members, the one assigned a ticket longest ago (or never) first; locked,
    so two requests that autoassign at once take turns."""
    statement = (
        select(Membership)
        .where(col(Membership.workspace_id) == workspace_id, col(Membership.enabled))
        .order_by(
            col(Membership.last_assigned_at).asc().nulls_first(),
            col(Membership.added_at),
            col(Membership.user_id),
        )
        .with_for_update()
    )
    found = await session.exec(statement, execution_options={"populate_existing": True})
    return list(found)


def other_live_plan(conversation: Conversation) -> Plan[str | None]:
    """Another thread between the same contact and number that is still open or pending."""
    found = yield (
        "SELECT id FROM conversations WHERE workspace_id = ? AND contact_id = ? "
        "AND sender_number = ? AND status IN ('open', 'pending') AND id != ? "
        "ORDER BY created_at DESC LIMIT 1",
        (
            conversation.workspace_id,
            conversation.contact_id,
            conversation.sender_number,
            conversation.id,
        ),
    )
    return str(found[0][0]) if found else None


def owner_plan(dialect: Dialect, conversation_id: str, user_id: str | None) -> Plan[None]:
    yield (
        "UPDATE conversations SET assignee_user_id = ?, updated_at = ? WHERE id = ?",
        (user_id, dialect.ts(utcnow()), conversation_id),
    )


def assigned_plan(dialect: Dialect, workspace_id: str, user_id: str, at: datetime) -> Plan[None]:
    """The member was given a ticket at `at` (their place in the round-robin roster)."""
    yield (
        "UPDATE memberships SET last_assigned_at = ? WHERE workspace_id = ? AND user_id = ?",
        (dialect.ts(at), workspace_id, user_id),
    )


def addressed_plan(dialect: Dialect, conversation_id: str, at: datetime | None) -> Plan[None]:
    """Mark the thread answered as of `at`; None: as never answered."""
    yield (
        "UPDATE conversations SET addressed_at = ?, updated_at = ? WHERE id = ?",
        (dialect.ts(at), dialect.ts(utcnow()), conversation_id),
    )


async def ticket_for_contact(
    *, session: AsyncSession, workspace_id: str, contact_id: str
) -> Conversation | None:
    """The contact's thread: the newest one still open or pending, else the newest one."""
    live = (
        col(Conversation.status).in_([ConversationStatus.OPEN, ConversationStatus.PENDING]).desc()
    )
    statement = (
        select(Conversation)
        .where(
            col(Conversation.workspace_id) == workspace_id,
            col(Conversation.contact_id) == contact_id,
        )
        .order_by(live, col(Conversation.created_at).desc(), col(Conversation.id).desc())
        .limit(1)
    )
    return (await session.exec(statement)).first()


async def contact_in(
    *, session: AsyncSession, workspace_id: str, contact_id: str
) -> Contact | None:
    contact = await session.get(Contact, contact_id)
    return contact if contact is not None and contact.workspace_id == workspace_id else None


def tag_contact_plan(
    dialect: Dialect, workspace_id: str, conversation_id: str, tags: Sequence[str]
) -> Plan[None]:
    """Add `tags` to the thread's contact (those it lacks, in order) and to the workspace's
    list of tags. Called in a send's transaction, which holds the contact's row."""
    if not tags:
        return
    found = yield (
        "SELECT c.id, c.tags FROM contacts c JOIN conversations v ON v.contact_id = c.id "
        "WHERE v.id = ?",
        (conversation_id,),
    )
    contact_id, current = found[0]
    have = list(parse_json(current) or [])
    added = [tag for tag in tags if tag not in have]
    stamp = dialect.ts(utcnow())
    if added:
        yield (
            "UPDATE contacts SET tags = ?, updated_at = ? WHERE id = ?",
            (dialect.json(have + added), stamp, contact_id),
        )
    # Only placeholders are formatted into the statement, never values.
    yield (
        f"INSERT INTO tags (workspace_id, name, created_at) VALUES {marks(len(tags), 3)} "  # noqa: S608
        "ON CONFLICT (workspace_id, name) DO NOTHING",
        [value for tag in tags for value in (workspace_id, tag, stamp)],
    )


def sent_by_plan(
    dialect: Dialect, message_id: str, user_id: str, status_callback: str | None
) -> Plan[None]:
    """Who of the team sent the message, and where its delivery statuses are to be POSTed."""
    yield (
        "UPDATE messages SET sender_user_id = ?, status_callback = ? WHERE id = ?",
        (user_id, status_callback, message_id),
    )


# --- Events -----------------------------------------------------------------------------------


def _shown_events() -> ColumnElement[bool]:
    kind = col(Event.type)
    hidden = [kind.startswith(prefix, autoescape=True) for prefix in _UNSHOWN_PREFIXES]
    return not_(or_(*hidden, kind.in_(_UNSHOWN)))


async def stream(
    *, session: AsyncSession, conversation_ids: Sequence[str], limit: int, offset: int
) -> list[Event | Message]:
    """The threads' events and (not hidden) messages together, newest first: one page."""
    ids = list(conversation_ids)
    events_part: Select[str, str, datetime] = core_select(
        literal_column("'e'").label("kind"),
        col(Event.id).label("id"),
        col(Event.created_at).label("at"),
    ).where(col(Event.conversation_id).in_(ids), _shown_events())
    messages_part: Select[str, str, datetime] = core_select(
        literal_column("'m'").label("kind"),
        col(Message.id).label("id"),
        col(Message.created_at).label("at"),
    ).where(col(Message.conversation_id).in_(ids), not_(col(Message.hidden)))
    both = union_all(events_part, messages_part).subquery()
    page = list(
        await session.exec(
            select(both.c.kind, both.c.id)
            .order_by(both.c.at.desc(), both.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    event_ids = [ident for kind, ident in page if kind == "e"]
    message_ids = [ident for kind, ident in page if kind == "m"]
    loaded: dict[str, Event | Message] = {}
    if event_ids:
        found_events = await session.exec(select(Event).where(col(Event.id).in_(event_ids)))
        loaded.update((event.id, event) for event in found_events)
    if message_ids:
        found_messages = await session.exec(select(Message).where(col(Message.id).in_(message_ids)))
        loaded.update((message.id, message) for message in found_messages)
    return [loaded[ident] for _, ident in page if ident in loaded]
