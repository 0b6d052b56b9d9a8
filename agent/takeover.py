"""A person in a thread: replies sent by a person, closing and reopening, taking the thread from
the agent and handing it back, the contact's tags and internal notes.

The `/v1` API and the `smsagent reply/handback/close/…` commands both load the thread in a
session of theirs and call these, so the rules are written once: one live thread per contact
and number, nothing sent to a contact who opted out, and the agent silent while a person has
the thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.errors import Conflict, OptedOut
from agent.outbox import Queued, queue_text_plan
from agent.settings import Settings
from storage import contacts, conversations, events, inbox_threads, users
from storage.models import (
    Contact,
    Conversation,
    ConversationMode,
    ConversationStatus,
    MessageAuthor,
)
from storage.raw import Dialect, Plan, in_session
from storage.types import new_id

HUMAN_REPLY_EVENT = "conversation.human_reply"
# Written by a person for the team; never sent.
NOTE_EVENT = "conversation.note"
STATE_EVENTS: dict[tuple[str, str], str] = {
    ("status", ConversationStatus.CLOSED): "conversation.closed",
    ("status", ConversationStatus.OPEN): "conversation.reopened",
    ("mode", ConversationMode.HUMAN): "conversation.taken_over",
    ("mode", ConversationMode.AGENT): "conversation.handed_back",
}
TAG_EVENTS = {True: "contact.tagged", False: "contact.untagged"}


@dataclass(frozen=True)
class Author:
    """Who acts: the name recorded, the team member's id when they are one, and where from."""

    name: str | None
    source: str
    user_id: str | None = None

    def data(self) -> dict[str, Any]:
        """What an event records of them."""
        found: dict[str, Any] = {"source": self.source}
        if self.name is not None:
            found["author_name"] = self.name
        if self.user_id is not None:
            found["user_id"] = self.user_id
        return found


async def find_author(
    *, session: AsyncSession, workspace_id: str, name: str, source: str
) -> Author:
    """The person `name` names: an enabled team member of the workspace whose email or name it
    is (any case), else just that name."""
    key = name.strip().casefold()
    team = [
        user
        for user, member in await users.members(session=session, workspace_id=workspace_id)
        if member.enabled
    ]
    by_email = [u for u in team if u.email.casefold() == key]
    by_name = [u for u in team if (u.name or "").strip().casefold() == key]
    found = by_email or by_name
    if len(found) != 1:
        return Author(name=name.strip(), source=source)
    return Author(name=found[0].name or found[0].email, source=source, user_id=found[0].id)


async def change_state(
    session: AsyncSession,
    conversation: Conversation,
    *,
    status: str | None = None,
    mode: str | None = None,
    author: Author,
) -> dict[str, str]:
    """Close or reopen the thread, or hand it between the agent and people; what changed (empty
    when it already was so). Handing a pending thread back reopens it; reopening a closed one
    is refused while another thread with the contact on that number is live."""
    return await in_session(
        session, lambda d: _state_plan(d, conversation, status, mode, author.data())
    )


def _state_plan(
    dialect: Dialect,
    conversation: Conversation,
    status: str | None,
    mode: str | None,
    data: dict[str, Any],
) -> Plan[dict[str, str]]:
    if status == ConversationStatus.OPEN and conversation.status == ConversationStatus.CLOSED:
        yield from _only_live_plan(conversation)
    if mode == ConversationMode.AGENT and conversation.status == ConversationStatus.PENDING:
        status = status or ConversationStatus.OPEN
    changes: dict[str, str] = {}
    if status is not None and status != conversation.status:
        changes["status"] = status
    if mode is not None and mode != conversation.mode:
        changes["mode"] = mode
    if not changes:
        return changes
    yield from conversations.set_state_plan(
        dialect, conversation.id, status=changes.get("status"), mode=changes.get("mode")
    )
    for kind, value in changes.items():
        yield from events.event_plan(
            dialect,
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            type=STATE_EVENTS[(kind, value)],
            data=data,
        )
    return changes


def _only_live_plan(conversation: Conversation) -> Plan[None]:
    """Refuse to bring a closed thread back while another with the contact is live: texts from
    the contact land in the newest live thread, so the reopened one would never hear back."""
    live = yield from inbox_threads.other_live_plan(conversation)
    if live is not None:
        raise Conflict(
            f"{live} is the live thread with this contact; close it first",
            code="another_thread_live",
        )


async def reply(
    session: AsyncSession,
    settings: Settings,
    conversation: Conversation,
    *,
    text: str,
    author: Author,
    origin: str,
    media_urls: Sequence[str] = (),
) -> Queued:
    """A person's reply, queued to go now (a reply in a live exchange is never held). The thread
    is open and in the person's hands afterwards: the agent stays silent until handed back."""
    contact = await session.get(Contact, conversation.contact_id)
    assert contact is not None
    if contact.opted_out:
        raise OptedOut("the contact opted out of messages from this workspace")
    phone = contact.phone
    return await in_session(
        session,
        lambda d: _reply_plan(
            d, settings, conversation, phone, text, author, origin, media_urls, new_id("msg")
        ),
    )


def _reply_plan(
    dialect: Dialect,
    settings: Settings,
    conversation: Conversation,
    phone: str,
    text: str,
    author: Author,
    origin: str,
    media_urls: Sequence[str],
    message_id: str,
) -> Plan[Queued]:
    if conversation.status == ConversationStatus.CLOSED:
        yield from _only_live_plan(conversation)
    queued = yield from queue_text_plan(
        dialect,
        settings,
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        sender=conversation.sender_number,
        to=phone,
        provider=conversation.provider,
        text=text,
        author=MessageAuthor.HUMAN,
        media_urls=media_urls,
        message_id=message_id,
        origin=origin,
    )
    if author.user_id is not None:
        yield from inbox_threads.sent_by_plan(dialect, message_id, author.user_id, None)
    yield from conversations.set_state_plan(
        dialect, conversation.id, status=ConversationStatus.OPEN, mode=ConversationMode.HUMAN
    )
    yield from events.event_plan(
        dialect,
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        type=HUMAN_REPLY_EVENT,
        data={"message_id": message_id, "author_name": author.name, **author.data()},
    )
    return queued


async def tag_contact(
    session: AsyncSession, conversation: Conversation, tag: str, *, add: bool, author: Author
) -> bool:
    """Tag (or untag) the thread's contact, recorded in the thread; False when the contact
    already had (or lacked) the tag."""
    change = contacts.add_tag if add else contacts.remove_tag
    changed = await change(session=session, contact_id=conversation.contact_id, tag=tag)
    if changed:
        await in_session(
            session,
            lambda d: events.event_plan(
                d,
                workspace_id=conversation.workspace_id,
                conversation_id=conversation.id,
                type=TAG_EVENTS[add],
                data={"tag": tag, **author.data()},
            ),
        )
    return changed


async def add_note(
    session: AsyncSession, conversation: Conversation, text: str, *, author: Author
) -> str:
    """An internal note in the thread for the team, never sent; the event's id."""
    data: dict[str, Any] = {"text": text, "author": author.name, "source": author.source}
    if author.user_id is not None:
        data["user_id"] = author.user_id
    return await in_session(
        session,
        lambda d: events.event_plan(
            d,
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            type=NOTE_EVENT,
            data=data,
        ),
    )
