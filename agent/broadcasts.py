"""Broadcasts: one text to an audience of contacts, each in a 1-on-1 thread with the number.

A draft keeps how its audience is chosen (tags, contacts, phone numbers, a field's value); a
phone number that is not a contact yet becomes one when it is added. Publishing copies the
audience into recipients once and wakes the sender number's broadcast job.

The job is per sender number (`broadcast:<number>`, unique among unfinished jobs): a number's
broadcast texts are paced together, `broadcast_per_second` segments a second at most (a long
text takes the slots of its segments), whichever broadcasts they belong to and whichever
process runs the job. A run sends for a few seconds and hands the job
back, due at its next slot, so a stopping worker lets it go within its grace period and the
next run (here or in another process) carries on from the recipients' rows. Each text goes
through `kickoff.send` (it continues the live thread with the contact or opens one, refuses
opted-out and blocked contacts, and wants recorded consent for marketing), and its recipient
row is marked in the send's own transaction: a recipient is texted once, across crashes.

Quiet hours are looked at before a recipient's turn: one whose window is closed is held until
it opens and texted then, paced with the rest, rather than queued for a morning burst. Landlines
are never texted. A reply to a broadcast is a text in its thread, which the agent answers as
any other.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.composer import count_segments, normalize_gsm
from agent.deps import Deps
from agent.errors import Blocked, Conflict, DomainError, InvalidInput, NotFound, OptedOut
from agent.kickoff import Outgoing, Sent, send
from agent.phones import InvalidPhoneNumber, mask_phone, normalize_phone
from agent.quiet import next_allowed, parse_window, recipient_zone
from agent.worker import LaneSpec
from storage import broadcasts as store
from storage import jobs
from storage.broadcasts import Audience, Counters, DueRecipient, FieldMatch, RecipientStatus
from storage.contacts import contact_id_for_phone
from storage.jobs import Lease
from storage.models import (
    Broadcast,
    BroadcastStatus,
    JobStatus,
    MessageAuthor,
    MessageType,
    User,
    Workspace,
)
from storage.raw import Dialect, Plan, commit_plan, in_session
from storage.types import new_id, utcnow
from storage.workspaces import sender_numbers

log = logging.getLogger("smsagent.broadcasts")

BROADCAST_JOB = "broadcast"
# Numbers sending broadcasts at once in one process (each holds a slot while a run goes).
LANE = LaneSpec("broadcasts", (BROADCAST_JOB,), concurrency=50, batch=10)
# A run sends for about this long, then hands the job back (within a stopping worker's grace).
RUN_SECONDS = 3.0
# A failing run is retried with the worker's backoff (at most five minutes apart) this often.
JOB_ATTEMPTS = 100
MAX_TAGS = 100
MAX_LISTED = 5_000
MAX_FIELDS = 20
_READ_BATCH = 50
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def broadcast_key(number: str) -> str:
    return f"broadcast:{number}"


# --- Drafts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceRequest:
    """Contacts to add to an audience, as given: phone numbers in any format, a field's name
    and the value it must equal, and whether the texts are marketing (None: as they were)."""

    tags: Sequence[str] = ()
    contact_ids: Sequence[str] = ()
    phones: Sequence[str] = ()
    field: tuple[str, str] | None = None
    marketing: bool | None = None


@dataclass(frozen=True)
class Changes:
    """A draft's text and settings; None leaves one as it was (a new draft needs a message)."""

    message: str | None = None
    media_url: str | None = None
    status_callback: str | None = None
    name: str | None = None
    audience: AudienceRequest = field(default_factory=AudienceRequest)


async def create_broadcast(deps: Deps, *, workspace_id: str, user_id: str, changes: Changes) -> str:
    """A new draft; its id."""
    if not changes.message:
        raise InvalidInput(
            "message is required", details=[{"field": "message", "message": "required"}]
        )
    broadcast_id = new_id("bc")
    async with deps.sessions() as session, session.begin():
        audience = await _added(session, workspace_id, Audience(), changes.audience)
        session.add(
            Broadcast(
                id=broadcast_id,
                workspace_id=workspace_id,
                user_id=user_id,
                name=changes.name,
                message=changes.message,
                media_url=changes.media_url,
                status_callback=changes.status_callback,
                audience=audience.to_json(),
            )
        )
    log.info("broadcast.created broadcast_id=%s workspace_id=%s", broadcast_id, workspace_id)
    return broadcast_id


async def update_broadcast(
    deps: Deps, *, workspace_id: str, broadcast_id: str, changes: Changes
) -> None:
    """Change a draft and add to its audience (a published broadcast no longer changes)."""
    async with deps.sessions() as session, session.begin():
        found = await store.get_broadcasts(
            session=session, workspace_id=workspace_id, ids=[broadcast_id], lock=True
        )
        if not found:
            raise NotFound(f"no broadcast {broadcast_id}")
        broadcast = found[0]
        if broadcast.status != BroadcastStatus.DRAFT:
            raise Conflict(
                f"the broadcast is {broadcast.status}: only a draft can change",
                code="broadcast_published",
            )
        audience = await _added(
            session, workspace_id, Audience.from_json(broadcast.audience), changes.audience
        )
        for name in ("message", "media_url", "status_callback", "name"):
            value = getattr(changes, name)
            if value is not None:
                setattr(broadcast, name, value)
        broadcast.audience = audience.to_json()
        broadcast.updated_at = utcnow()


async def _added(
    session: AsyncSession, workspace_id: str, audience: Audience, request: AudienceRequest
) -> Audience:
    """`audience` with `request` added: phones normalised (new ones become contacts), contact
    ids checked, a field's value put the way it is stored."""
    tags = [t.strip() for t in request.tags if t.strip()]
    phones = [_phone(raw, "via_phone_numbers") for raw in request.phones]
    ids = list(dict.fromkeys(i.strip() for i in request.contact_ids if i.strip()))
    known = await store.known_contacts(session=session, workspace_id=workspace_id, contact_ids=ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidInput(
            f"no contacts with ids {', '.join(unknown[:10])}",
            details=[{"field": "via_contact_ids", "message": f"no contact {i}"} for i in unknown],
        )
    for phone in dict.fromkeys(phones):
        await contact_id_for_phone(session=session, workspace_id=workspace_id, phone=phone)
    fields: tuple[FieldMatch, ...] = ()
    if request.field is not None:
        fields = (_field_match(*request.field),)
    added = audience.adding(
        Audience(
            tags=tuple(tags),
            contact_ids=tuple(ids),
            phones=tuple(phones),
            fields=fields,
            marketing=audience.marketing if request.marketing is None else request.marketing,
        )
    )
    for name, items, limit in (
        ("via_tags", added.tags, MAX_TAGS),
        ("via_contact_ids", added.contact_ids, MAX_LISTED),
        ("via_phone_numbers", added.phones, MAX_LISTED),
        ("via_field", added.fields, MAX_FIELDS),
    ):
        if len(items) > limit:
            raise InvalidInput(
                f"{name}: a broadcast takes at most {limit}",
                details=[{"field": name, "message": f"at most {limit}"}],
            )
    return added


def _phone(raw: str, name: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumber as exc:
        raise InvalidInput(
            f"{name}: {raw!r} is not a phone number",
            details=[{"field": name, "message": str(exc)}],
        ) from exc


def _field_match(name: str, value: str) -> FieldMatch:
    name = name.strip().lower() if name.strip().lower() in _STANDARD else name.strip()
    if not name:
        raise InvalidInput(
            "via_field[field] is empty",
            details=[{"field": "via_field[field]", "message": "give a field's name"}],
        )
    if name in ("phone", "phone_formatted"):
        return FieldMatch(name, _phone(value, "via_field[value]"))
    if name == "opted_out":
        flag = value.strip().lower()
        if flag not in ("1", "0", "true", "false"):
            raise InvalidInput(
                "via_field[value] for opted_out is true or false",
                details=[{"field": "via_field[value]", "message": "true or false (1 or 0)"}],
            )
        return FieldMatch(name, "true" if flag in ("1", "true") else "false")
    return FieldMatch(name, value)


_STANDARD = store.PROFILE_FIELDS | {"name", "phone", "phone_formatted", "email", "opted_out"}


# --- Publishing -------------------------------------------------------------------------------


async def publish_broadcast(
    deps: Deps, *, workspace_id: str, broadcast_id: str, at: datetime | None
) -> None:
    """Publish a draft to go at `at` (None: now) from the inbox's number, or move a scheduled
    one to `at`."""
    async with deps.reads() as session:
        numbers = await sender_numbers(session=session, workspace_id=workspace_id)
    if not numbers:
        raise Conflict("the inbox has no number to send from", code="no_sender_number")
    dialect = Dialect(deps.engine.dialect.name)
    start = at or utcnow()
    gap = timedelta(seconds=1 / deps.settings.broadcast_per_second)

    def publish() -> Plan[str | None]:
        before, number = yield from store.publish_plan(
            dialect,
            workspace_id=workspace_id,
            broadcast_id=broadcast_id,
            at=start,
            number=numbers[0].number,
        )
        if number is None:
            return before
        yield from store.wake_plan(
            dialect,
            kind=BROADCAST_JOB,
            key=broadcast_key(number),
            payload={"workspace_id": workspace_id, "number": number},
            at=start,
            soonest=utcnow() + gap,
            max_attempts=JOB_ATTEMPTS,
        )
        return before

    before = await commit_plan(deps.engine, publish(), urgent=True)
    if before is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    if before not in (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED):
        raise Conflict(f"the broadcast is {before} already", code="broadcast_published")
    deps.nudge(BROADCAST_JOB)
    log.info(
        "broadcast.published broadcast_id=%s workspace_id=%s at=%s",
        broadcast_id,
        workspace_id,
        start.isoformat(),
    )


# --- Reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastView:
    broadcast: Broadcast
    creator: User | None
    counters: Counters


async def describe(deps: Deps, *, workspace_id: str, ids: Sequence[str]) -> list[BroadcastView]:
    """The workspace's broadcasts among `ids` (in that order), with their creators and their
    live counters."""
    async with deps.reads() as session:
        found = await store.get_broadcasts(session=session, workspace_id=workspace_id, ids=ids)
        return await _views(session, found, counted=True)


async def list_page(
    deps: Deps,
    *,
    workspace_id: str,
    offset: int,
    limit: int,
    created_from: datetime | None,
    created_to: datetime | None,
) -> list[BroadcastView]:
    """A page of the workspace's broadcasts, newest first, without counters."""
    async with deps.reads() as session:
        found = await store.list_broadcasts(
            session=session,
            workspace_id=workspace_id,
            offset=offset,
            limit=limit,
            created_from=created_from,
            created_to=created_to,
        )
        return await _views(session, found, counted=False)


async def audience_count(deps: Deps, *, workspace_id: str, broadcast_id: str) -> int:
    """How many contacts the broadcast goes to: its audience now for a draft, its recipients
    once published."""
    found = await describe(deps, workspace_id=workspace_id, ids=[broadcast_id])
    if not found:
        raise NotFound(f"no broadcast {broadcast_id}")
    return found[0].counters.audience


async def _views(
    session: AsyncSession, found: list[Broadcast], counted: bool
) -> list[BroadcastView]:
    creators = await store.creators(session=session, broadcasts=found)
    counters: dict[str, Counters] = {}
    if counted:
        published = [b.id for b in found if b.status != BroadcastStatus.DRAFT]
        counters = await in_session(session, lambda d: store.counters_plan(d, published))
        for draft in (b for b in found if b.status == BroadcastStatus.DRAFT):
            size = await in_session(session, _sizer(draft))
            counters[draft.id] = Counters(audience=size, waiting=size)
    return [
        BroadcastView(b, creators.get(b.user_id or ""), counters.get(b.id, Counters()))
        for b in found
    ]


def _sizer(draft: Broadcast) -> Callable[[Dialect], Plan[int]]:
    audience = Audience.from_json(draft.audience)
    return lambda dialect: store.audience_size_plan(dialect, draft.workspace_id, audience)


def estimated_segments(message: str) -> int:
    """Segments of the text as written (variables take their names' room)."""
    return count_segments(normalize_gsm(message).strip()).segments


def personalize(message: str, recipient: DueRecipient) -> str:
    """`$first_name`-style variables filled from the contact: names, email, phone, the inbox's
    fields and custom variables. One the contact has no value for is left out (and the gap
    tidied); a `$` before anything but a letter or `_` stays ("$20 off")."""
    full = " ".join(n for n in (recipient.first_name, recipient.last_name) if n)
    values: dict[str, Any] = {
        **recipient.profile,
        **recipient.custom_fields,
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
        "name": full,
        "email": recipient.email,
        "phone": recipient.phone,
    }
    blanked = False

    def fill(match: re.Match[str]) -> str:
        nonlocal blanked
        name = match.group(1)
        value = values.get(name, values.get(name.lower()))
        if value is None or isinstance(value, dict | list) or not str(value).strip():
            blanked = True
            return ""
        return str(value).strip()

    text = _VARIABLE.sub(fill, message)
    if blanked:
        text = re.sub(r"[ \t]+([,.!?])", r"\1", text)
        text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return text


# --- Sending ----------------------------------------------------------------------------------


class RecipientTaken(Exception):
    """The recipient was no longer waiting when its send was about to commit."""


@dataclass
class _Run:
    texted: int = 0
    skipped: int = 0
    held: int = 0


class BroadcastHandler:
    """Runs `broadcast` jobs: a number's due recipients, paced, for about `RUN_SECONDS`."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._dialect = Dialect(deps.engine.dialect.name)
        self._window = parse_window(deps.settings.send_window)
        self._gap = 1.0 / deps.settings.broadcast_per_second

    async def run(self, job: Lease) -> None:
        deps, dialect = self._deps, self._dialect
        workspace_id, number = str(job.payload["workspace_id"]), str(job.payload["number"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RUN_SECONDS
        ready = loop.time()  # when the next text may go
        tally = _Run()
        async with deps.reads() as session:
            workspace = await session.get(Workspace, workspace_id)
        zone = workspace.timezone if workspace is not None else deps.settings.timezone
        sending = await commit_plan(
            deps.engine,
            store.start_due_plan(dialect, workspace_id=workspace_id, number=number, now=utcnow()),
        )
        for broadcast in sending:
            after = ""
            while due := await commit_plan(
                deps.reader,
                store.due_recipients_plan(
                    dialect, broadcast.id, after=after, now=utcnow(), limit=_READ_BATCH
                ),
            ):
                for recipient in due:
                    if loop.time() > deadline:
                        await self._pause(job, workspace_id, number, ready - loop.time(), tally)
                        return
                    after = recipient.contact_id
                    if await self._set_aside(broadcast.id, recipient, zone, tally):
                        continue
                    wait = ready - loop.time()
                    if loop.time() + max(wait, 0.0) > deadline:
                        await self._pause(job, workspace_id, number, wait, tally)
                        return
                    if wait > 0:
                        await asyncio.sleep(wait)
                    started = loop.time()
                    segments = await self._send(workspace_id, number, broadcast, recipient, tally)
                    if segments:
                        ready = started + segments * self._gap
        await self._hand_back(job, workspace_id, number, ready - loop.time(), finished=True)
        self._log(number, tally, "caught_up")

    async def _pause(
        self, job: Lease, workspace_id: str, number: str, wait: float, tally: _Run
    ) -> None:
        """The run's time is up: the job goes back, due at the next slot."""
        await self._hand_back(job, workspace_id, number, wait)
        self._log(number, tally, "paused")

    async def exhausted(self, job: Lease, error: str) -> None:
        # The recipients keep their state: the next publish from the number resumes them.
        log.error("broadcast.gave_up job_id=%s error=%s", job.id, error[:200])
        await commit_plan(
            self._deps.engine,
            jobs.settle_plan(self._dialect, job, status=JobStatus.FAILED, error=error),
        )

    async def _set_aside(
        self, broadcast_id: str, recipient: DueRecipient, zone: str, tally: _Run
    ) -> bool:
        """Skip a landline, hold one in quiet hours; True when the recipient is not texted now."""
        status, code, until = None, None, None
        if _flag(recipient.profile.get("landline")):
            status, code = RecipientStatus.SKIPPED, "contact_landline"
        else:
            try:
                where = recipient_zone(
                    phone=recipient.phone, contact_zone=recipient.timezone, workspace_zone=zone
                )
                until = next_allowed(utcnow(), where, self._window)
            except (ZoneInfoNotFoundError, ValueError):
                status, code = RecipientStatus.FAILED, "invalid_timezone"
            if until is not None:
                status = RecipientStatus.HELD
        if status is None:
            return False
        await commit_plan(
            self._deps.engine,
            store.settle_recipient_plan(
                self._dialect,
                broadcast_id=broadcast_id,
                contact_id=recipient.contact_id,
                status=status,
                error_code=code,
                until=until,
            ),
        )
        if status == RecipientStatus.HELD:
            tally.held += 1
        else:
            tally.skipped += 1
        return True

    async def _send(
        self,
        workspace_id: str,
        number: str,
        broadcast: Broadcast,
        recipient: DueRecipient,
        tally: _Run,
    ) -> int:
        """Text the recipient; the segments queued (the slots of the pace it takes), 0 when
        nothing was."""
        audience = Audience.from_json(broadcast.audience)

        def mark(dialect: Dialect, sent: Sent) -> Plan[None]:
            marked = yield from store.queued_plan(
                dialect,
                broadcast_id=broadcast.id,
                contact_id=recipient.contact_id,
                message_id=sent.message_id,
                conversation_id=sent.conversation_id,
                sender_user_id=broadcast.user_id,
                status_callback=broadcast.status_callback,
            )
            if not marked:
                raise RecipientTaken(recipient.contact_id)

        outgoing = Outgoing(
            to=recipient.phone,
            text=personalize(broadcast.message, recipient),
            sender=number,
            message_type=MessageType.MARKETING if audience.marketing else MessageType.TRANSACTIONAL,
            media_urls=(broadcast.media_url,) if broadcast.media_url else (),
            origin="avochato",
            new_thread=False,
            author=MessageAuthor.API,
        )
        try:
            sent = await send(self._deps, workspace_id, outgoing, remember=mark)
        except RecipientTaken:
            return 0
        except (OptedOut, Blocked) as exc:
            await self._settle(broadcast.id, recipient, RecipientStatus.SKIPPED, exc.code)
            tally.skipped += 1
            return 0
        except DomainError as exc:
            skipped = isinstance(exc, Conflict) and exc.code == "marketing_consent_missing"
            status = RecipientStatus.SKIPPED if skipped else RecipientStatus.FAILED
            await self._settle(broadcast.id, recipient, status, exc.code)
            tally.skipped += 1
            return 0
        tally.texted += 1
        return max(sent.segments, 1)

    async def _settle(
        self, broadcast_id: str, recipient: DueRecipient, status: RecipientStatus, code: str
    ) -> None:
        await commit_plan(
            self._deps.engine,
            store.settle_recipient_plan(
                self._dialect,
                broadcast_id=broadcast_id,
                contact_id=recipient.contact_id,
                status=status,
                error_code=code,
            ),
        )

    async def _hand_back(
        self, job: Lease, workspace_id: str, number: str, wait: float, *, finished: bool = False
    ) -> None:
        """Give the job back due at the next slot; once caught up, due when the next texts are
        (a scheduled start, a hold's end) or done. Its row is locked first, so a publish that
        wakes it either waits for this or is seen here."""
        dialect = self._dialect
        slot = utcnow() + timedelta(seconds=max(wait, 0.0))

        def plan() -> Plan[datetime | None]:
            if not (yield from jobs.holds_plan(dialect, job)):
                return None
            due: datetime | None = slot
            if finished:
                now = utcnow()
                yield from store.complete_plan(
                    dialect, workspace_id=workspace_id, number=number, now=now
                )
                due = yield from store.next_due_plan(
                    dialect, workspace_id=workspace_id, number=number, now=now
                )
            if due is None:
                yield from jobs.settle_plan(dialect, job)
                return None
            # A run is not an attempt: only failures count toward the job's limit.
            yield from jobs.settle_plan(
                dialect, job, status=JobStatus.QUEUED, run_at=max(due, slot), uncount=True
            )
            return max(due, slot)

        due = await commit_plan(self._deps.engine, plan())
        if due is not None:
            delay = (due - utcnow()).total_seconds()
            self._deps.nudge(BROADCAST_JOB, due_at=asyncio.get_running_loop().time() + delay)

    def _log(self, number: str, tally: _Run, state: str) -> None:
        log.info(
            "broadcast.run number=%s texted=%d skipped=%d held=%d state=%s",
            mask_phone(number),
            tally.texted,
            tally.skipped,
            tally.held,
            state,
        )


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
