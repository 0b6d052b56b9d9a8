"""One thread as people read it: messages, events, notes and agent runs in time order, each
with who did it. Shared by `transcripts show` and the HTML export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from agent.media import size_text
from agent.schemas import AgentRunOut, ContactOut, ConversationOut, EventOut, MediaOut, MessageOut
from agent.takeover import NOTE_EVENT

HANDOFF_EVENTS = frozenset(
    {"conversation.handoff", "conversation.taken_over", "conversation.handed_back"}
)
Kind = Literal["message", "event", "note", "run"]


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: Kind
    message: MessageOut | None = None
    event: EventOut | None = None
    run: AgentRunOut | None = None


# At the same instant: the run that decided, then what it did, then what it said.
_ORDER: dict[Kind, int] = {"run": 0, "event": 1, "note": 1, "message": 2}


def timeline(conversation: ConversationOut) -> list[Entry]:
    entries = [Entry(m.created_at, "message", message=m) for m in conversation.messages]
    entries += [
        Entry(e.created_at, "note" if e.type == NOTE_EVENT else "event", event=e)
        for e in conversation.events
        # A person's reply is its message; the event only names the author.
        if e.type != "conversation.human_reply"
    ]
    entries += [Entry(r.started_at, "run", run=r) for r in conversation.agent_runs]
    return sorted(entries, key=lambda e: (e.at, _ORDER[e.kind]))


@dataclass(frozen=True)
class Totals:
    texts: int
    segments: int
    cost_cents: float
    runs: int
    prompt_tokens: int
    completion_tokens: int


def totals(conversation: ConversationOut) -> Totals:
    """What the thread cost: texts, segments and SMS cost; agent runs and model tokens."""
    texts, runs = conversation.messages, conversation.agent_runs
    return Totals(
        texts=len(texts),
        segments=sum(m.segments for m in texts),
        cost_cents=sum(m.cost_cents or 0 for m in texts),
        runs=len(runs),
        prompt_tokens=sum(r.prompt_tokens for r in runs),
        completion_tokens=sum(r.completion_tokens for r in runs),
    )


def contact_name(contact: ContactOut) -> str | None:
    return " ".join(n for n in (contact.first_name, contact.last_name) if n) or None


def author(message: MessageOut, contact: ContactOut) -> str:
    """Who wrote it, as a reader names them."""
    if message.author == "contact":
        return contact_name(contact) or "contact"
    if message.author == "human":
        return message.author_name or "person"
    return message.author


def local(moment: datetime | None, zone: str, pattern: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime(pattern) if moment else "-"


def delivery(message: MessageOut) -> str:
    """`delivered`, `undelivered 30007`, `received` — what became of a text."""
    if message.direction == "inbound":
        return "received"
    if message.error_code:
        return f"{message.status} {message.error_code}"
    return message.status


def media_line(item: MediaOut) -> str:
    """`image/jpeg, 240 KB, kept in file default/conv_…/med_….jpg`, or why it was not kept."""
    if item.status == "stored":
        size = size_text(item.size_bytes or 0)
        return f"{item.content_type}, {size}, kept in {item.storage} {item.key}"
    what = f"{item.content_type}, " if item.content_type else ""
    return f"{what}{item.status.replace('_', ' ')}: {item.error or 'no reason recorded'}"


def media_of(message: MessageOut) -> list[tuple[str, MediaOut | None]]:
    """Each of a text's media URLs, with what became of it (None: not fetched, or sent)."""
    kept = {item.position: item for item in message.media}
    return [(url, kept.get(i)) for i, url in enumerate(message.media_urls)]


def cost(message: MessageOut) -> str:
    parts = [f"{message.segments} seg"] if message.segments else []
    if message.cost_cents is not None:
        parts.append(f"{message.cost_cents:.2f}¢")
    return ", ".join(parts)
