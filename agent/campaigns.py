"""Drip campaigns: a keyword (or the API) starts a contact on a sequence of texts.

A campaign is a keyword and its steps. The first step is sent at once: as the reply of the turn
that read the keyword, or as the API's send. The later ones are queued in the same transaction
as `scheduled` messages, each `delay` after the one before (pushed to the morning when it would
land in the recipient's quiet hours, the next step counting from there), and the enrollment
keeps their ids. Nothing runs per step afterwards: the worker sends each when it falls due, and
calling a step off is canceling its scheduled message.

- A keyword sent again while its campaign is running starts it over: the steps still waiting
  from the first run are canceled.
- A contact who opts out is taken out of every campaign (their waiting steps canceled); an
  opted-out or blocked contact is never enrolled.
- An enrollment is `active` while steps wait, `canceled` when they were called off, and `done`
  once none waits: a campaign of one step is done at once, a longer one is marked done when it
  is next looked at after its last step has gone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.deps import Deps
from agent.errors import Conflict, NotFound
from agent.fastpath import Keyword, classify
from agent.kickoff import Outgoing, Sent, send
from agent.outbox import MAX_API_BODY, queue_text_plan, send_key
from agent.phones import mask_phone
from agent.quiet import next_allowed, parse_window, recipient_zone
from agent.schemas import HttpUrlText
from agent.settings import Settings
from storage import campaigns as stored
from storage import conversations, events, jobs, messages
from storage.campaigns import EnrollmentStatus
from storage.engine import SessionFactory
from storage.models import Campaign, CampaignEnrollment, MessageAuthor, MessageType
from storage.raw import Dialect, Plan, commit_plan
from storage.types import utcnow
from storage.workspaces import get_workspace

log = logging.getLogger("smsagent.campaigns")

# A keyword is one word a customer can text: letters, digits, "_" and "-", up to 64.
KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# A campaign's id as `new_id("cmp")` writes it.
CAMPAIGN_ID = re.compile(r"cmp_[0-9a-z]{26}")
MAX_STEPS = 50
MAX_DELAY = timedelta(days=365)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY = re.compile(r"(?:\d+[smhd])+|\d+")


@dataclass(frozen=True)
class Step:
    """One text of a campaign, as stored: `delay_seconds` after the step before."""

    message: str
    delay_seconds: int
    media_url: str | None


def steps_of(campaign: Campaign) -> list[Step]:
    return [
        Step(
            message=str(step["message"]),
            delay_seconds=int(step.get("delay_seconds") or 0),
            media_url=step.get("media_url"),
        )
        for step in campaign.steps
    ]


def keyword_in(bodies: Sequence[str]) -> str | None:
    """The campaign keyword a burst may be: a single text of one word, trimmed, that the fast
    path has no meaning for (STOP, HELP, YES… are never a campaign's)."""
    if len(bodies) != 1:
        return None
    word = bodies[0].strip()
    if KEYWORD.fullmatch(word) is None or classify(word).keyword is not Keyword.NONE:
        return None
    return word


def first_text(campaign: Campaign) -> str:
    return steps_of(campaign)[0].message


def first_media(campaign: Campaign | None) -> tuple[str, ...]:
    if campaign is None:
        return ()
    media = steps_of(campaign)[0].media_url
    return (media,) if media else ()


# Defining campaigns (YAML)


def parse_delay(value: str | int) -> int:
    """ "0", "90s", "15m", "2h", "2d", "1d12h" (or a number of seconds) → seconds."""
    if isinstance(value, bool):
        raise ValueError("a delay is a number with a unit: 30s, 15m, 2h, 2d")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip().lower().replace(" ", "")
        if _DELAY.fullmatch(text) is None:
            raise ValueError(
                f"{value!r} is not a delay: give a number with a unit (30s, 15m, 2h, 2d)"
            )
        seconds = (
            int(text)
            if text.isdigit()
            else sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text))
        )
    if seconds < 0 or seconds > MAX_DELAY.total_seconds():
        raise ValueError(f"a delay is from 0 to {MAX_DELAY.days}d")
    return seconds


class StepSpec(BaseModel):
    """A step as written: its text, how long after the step before it goes, a picture."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message: str = Field(min_length=1, max_length=MAX_API_BODY)
    delay: str | int = Field(default="0", description="after the step before: 30s, 15m, 2h, 2d")
    media_url: HttpUrlText | None = None

    @field_validator("delay")
    @classmethod
    def _delay(cls, value: str | int) -> str | int:
        parse_delay(value)
        return value

    @property
    def delay_seconds(self) -> int:
        return parse_delay(self.delay)


class CampaignSpec(BaseModel):
    """A campaign as a YAML file writes it: `key`, `name` and `steps`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("key")
    @classmethod
    def _keyword(cls, value: str) -> str:
        if KEYWORD.fullmatch(value) is None:
            raise ValueError(
                "a keyword is one word of letters, digits, '_' or '-' (up to 64 characters)"
            )
        meaning = classify(value).keyword
        if meaning is not Keyword.NONE:
            raise ValueError(
                f"{value!r} already means {meaning.value.replace('_', '-')} to every text: "
                "choose another keyword"
            )
        return value

    @field_validator("steps")
    @classmethod
    def _first_at_once(cls, steps: list[StepSpec]) -> list[StepSpec]:
        if steps[0].delay_seconds != 0:
            raise ValueError("the first step goes at once: give it delay 0")
        return steps

    def stored_steps(self) -> list[dict[str, Any]]:
        return [
            {"message": s.message, "delay_seconds": s.delay_seconds, "media_url": s.media_url}
            for s in self.steps
        ]


@dataclass(frozen=True)
class Saved:
    campaign_id: str
    key: str
    steps: int
    created: bool


async def save_campaign(sessions: SessionFactory, workspace_id: str, spec: CampaignSpec) -> Saved:
    """Create the workspace's campaign, or replace the one with its key. Enrollments already
    running keep the texts they were queued with."""
    async with sessions() as session, session.begin():
        if await get_workspace(session=session, workspace_id=workspace_id) is None:
            raise NotFound(f"no workspace {workspace_id}")
        campaign, created = await stored.save_campaign(
            session=session,
            workspace_id=workspace_id,
            key=spec.key,
            name=spec.name,
            steps=spec.stored_steps(),
        )
        saved = Saved(campaign.id, campaign.key, len(campaign.steps), created)
    log.info(
        "campaign.saved workspace_id=%s campaign_id=%s steps=%d created=%s",
        workspace_id,
        saved.campaign_id,
        saved.steps,
        saved.created,
    )
    return saved


# Starting


@dataclass(frozen=True)
class QueuedStep:
    message_id: str
    status: str  # queued | scheduled
    send_at: datetime | None


@dataclass(frozen=True)
class Enrolled:
    enrollment_id: str
    campaign_id: str
    key: str
    conversation_id: str
    status: str
    steps: tuple[QueuedStep, ...]


def start_plan(
    dialect: Dialect,
    settings: Settings,
    *,
    campaign: Campaign,
    conversation_id: str,
    contact_id: str,
    sender: str,
    provider: str,
    phone: str,
    zone: str,
    first: QueuedStep,
    source: str,
    origin: str | None = None,
) -> Plan[Enrolled]:
    """Enroll the contact, whose first step is `first` (queued by the caller in this
    transaction): queue the later steps, record the enrollment and its event."""
    earlier = yield from stored.active_enrollments_plan([campaign.id], [contact_id])
    if earlier:
        yield from call_off_plan(dialect, earlier, recursive=True, source="restarted")
    window = parse_window(settings.send_window)
    queued = [first]
    at = first.send_at or utcnow()
    for step in steps_of(campaign)[1:]:
        at += timedelta(seconds=step.delay_seconds)
        at = next_allowed(at, zone, window) or at
        later = yield from queue_text_plan(
            dialect,
            settings,
            workspace_id=campaign.workspace_id,
            conversation_id=conversation_id,
            sender=sender,
            to=phone,
            provider=provider,
            text=step.message,
            # Not a system text: the send is refused if the contact opts out meanwhile.
            author=MessageAuthor.API,
            media_urls=(step.media_url,) if step.media_url else (),
            message_type=MessageType.CONVERSATIONAL,
            origin=origin,
            send_at=at,
        )
        queued.append(QueuedStep(later.message.id, later.message.status, at))
    status = EnrollmentStatus.ACTIVE if len(queued) > 1 else EnrollmentStatus.DONE
    message_ids = [q.message_id for q in queued]
    enrollment_id = yield from stored.add_enrollment_plan(
        dialect,
        campaign_id=campaign.id,
        workspace_id=campaign.workspace_id,
        contact_id=contact_id,
        conversation_id=conversation_id,
        message_ids=message_ids,
        status=status,
    )
    yield from events.event_plan(
        dialect,
        workspace_id=campaign.workspace_id,
        conversation_id=conversation_id,
        type="campaign.enrolled",
        data={
            "campaign_id": campaign.id,
            "key": campaign.key,
            "enrollment_id": enrollment_id,
            "message_ids": message_ids,
            "source": source,
        },
    )
    return Enrolled(
        enrollment_id, campaign.id, campaign.key, conversation_id, status, tuple(queued)
    )


async def enroll(
    deps: Deps,
    workspace_id: str,
    key: str,
    to: str,
    *,
    remember: Callable[[Dialect, Enrolled], Plan[None]] | None = None,
) -> Enrolled:
    """Start the phone (E.164) on the workspace's campaign `key` (or id): its first step is sent
    now (in the live thread with them, or a new one), the rest scheduled. `remember` writes the
    result in the same transaction."""
    campaign = await _campaign(deps, workspace_id, key)
    steps = steps_of(campaign)
    if not steps:
        raise Conflict(f"campaign {campaign.key} has no steps", code="campaign_empty")
    enrolled: list[Enrolled] = []

    def started(dialect: Dialect, sent: Sent) -> Plan[None]:
        thread = yield from conversations.thread_context(sent.conversation_id)
        assert thread is not None  # queued in this very transaction
        contact = thread.contact
        result = yield from start_plan(
            dialect,
            deps.settings,
            campaign=campaign,
            conversation_id=sent.conversation_id,
            contact_id=contact.id,
            sender=thread.conversation.sender_number,
            provider=thread.conversation.provider,
            phone=contact.phone,
            zone=recipient_zone(
                phone=contact.phone,
                contact_zone=contact.timezone,
                workspace_zone=thread.workspace.timezone,
            ),
            first=QueuedStep(sent.message_id, sent.status, sent.send_at),
            source="api",
            origin="v1",
        )
        enrolled.append(result)
        if remember is not None:
            yield from remember(dialect, result)

    await send(
        deps,
        workspace_id,
        Outgoing(
            to=to,
            text=steps[0].message,
            media_urls=(steps[0].media_url,) if steps[0].media_url else (),
            new_thread=False,
        ),
        remember=started,
    )
    [result] = enrolled
    log.info(
        "campaign.enrolled workspace_id=%s campaign_id=%s enrollment_id=%s conversation_id=%s "
        "steps=%d to=%s source=api",
        workspace_id,
        campaign.id,
        result.enrollment_id,
        result.conversation_id,
        len(result.steps),
        mask_phone(to),
    )
    return result


async def _campaign(deps: Deps, workspace_id: str, key: str) -> Campaign:
    found = await find(deps, workspace_id, [key])
    if not found:
        raise NotFound(f"no campaign {key}")
    return found[0][1]


async def find(deps: Deps, workspace_id: str, names: Sequence[str]) -> list[tuple[str, Campaign]]:
    """Each name (a keyword in any case, or a campaign id) that is one of the workspace's
    campaigns, with it, in the order given."""
    possible = [name for name in names if KEYWORD.fullmatch(name)]
    async with deps.reads() as session:
        found = await stored.find_campaigns(
            session=session,
            workspace_id=workspace_id,
            ids=[name for name in possible if CAMPAIGN_ID.fullmatch(name)],
            keys=possible,
        )
    named = []
    for name in names:
        match = next((c for c in found if name == c.id or name.lower() == c.key.lower()), None)
        if match is not None:
            named.append((name, match))
    return named


# Calling off


@dataclass(frozen=True)
class Tally:
    enrollments: int  # enrollments with a step called off
    messages: int  # scheduled messages canceled


def call_off_plan(
    dialect: Dialect,
    enrollments: Sequence[CampaignEnrollment],
    *,
    recursive: bool,
    source: str,
) -> Plan[Tally]:
    """Call off the step each enrollment waits on (its next scheduled message), or with
    `recursive` that one and every later one. An enrollment left with nothing waiting is
    `canceled`, or `done` when nothing waited."""
    waiting = yield from stored.waiting_plan([m for e in enrollments for m in e.message_ids])
    touched = canceled_total = 0
    for enrollment in enrollments:
        pending = [m for m in enrollment.message_ids if m in waiting]
        chosen = pending if recursive else pending[:1]
        canceled = []
        for message_id in chosen:
            if (yield from messages.cancel_scheduled_plan(dialect, message_id)):
                yield from jobs.cancel_queued_plan(dialect, send_key(message_id))
                canceled.append(message_id)
        if len(pending) > len(chosen):
            status = EnrollmentStatus.ACTIVE
        else:
            status = EnrollmentStatus.CANCELED if chosen else EnrollmentStatus.DONE
        yield from stored.enrollment_status_plan(dialect, enrollment.id, status)
        if not canceled:
            continue
        touched += 1
        canceled_total += len(canceled)
        if enrollment.conversation_id is not None:
            yield from events.event_plan(
                dialect,
                workspace_id=enrollment.workspace_id,
                conversation_id=enrollment.conversation_id,
                type="campaign.canceled",
                data={
                    "campaign_id": enrollment.campaign_id,
                    "enrollment_id": enrollment.id,
                    "message_ids": canceled,
                    "recursive": recursive,
                    "source": source,
                },
            )
    return Tally(touched, canceled_total)


async def cancel(
    deps: Deps,
    workspace_id: str,
    names: Sequence[str],
    *,
    phones: Sequence[str] | None,
    recursive: bool,
) -> Tally:
    """Call off the named campaigns (keywords or ids) for these phones (E.164), or for everyone
    in them when `phones` is None: the step each waits on, or with `recursive` every step left.
    A name that is none of the workspace's campaigns is NotFound, and nothing changes."""
    found = await find(deps, workspace_id, names)
    missing = [name for name in names if name not in {n for n, _ in found}]
    if missing:
        raise NotFound(f"no campaign {', '.join(missing)}")
    campaign_ids = list(dict.fromkeys(c.id for _, c in found))
    dialect = Dialect(deps.engine.dialect.name)

    def plan() -> Plan[Tally]:
        contact_ids = (
            None if phones is None else (yield from stored.contact_ids_plan(workspace_id, phones))
        )
        running = yield from stored.active_enrollments_plan(campaign_ids, contact_ids)
        return (yield from call_off_plan(dialect, running, recursive=recursive, source="api"))

    tally = await commit_plan(deps.engine, plan(), urgent=True)
    log.info(
        "campaign.canceled workspace_id=%s campaign_ids=%s phones=%s recursive=%s "
        "enrollments=%d messages=%d",
        workspace_id,
        ",".join(campaign_ids),
        "all" if phones is None else len(phones),
        recursive,
        tally.enrollments,
        tally.messages,
    )
    return tally


def opted_out_plan(dialect: Dialect, contact_id: str) -> Plan[None]:
    """A contact who opted out leaves every campaign: their waiting steps are canceled."""
    running = yield from stored.contact_enrollments_plan(contact_id)
    if running:
        yield from call_off_plan(dialect, running, recursive=True, source="opted_out")
