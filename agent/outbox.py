"""Outbound texts: compose, queue durably, deliver through the provider at most once.

A send is queued as a message row plus a `send` job in the caller's transaction. Delivery marks
the message `sending` (committed) before calling the provider; a message found in `sending`
after a crash is never sent again, because the provider may already have taken it. A reply
composed by a turn is queued with its send job already leased to the same worker, which sends it
as soon as the turn commits instead of waiting for the queue to hand it out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.composer import (
    ComposedSms,
    compose_sms,
    count_segments,
    estimate_cost,
    normalize_gsm,
)
from agent.deps import Deps
from agent.phones import mask_phone
from agent.providers import OutboundSms, ProviderError
from agent.settings import Settings
from storage import contacts, conversations, events, jobs, messages
from storage.jobs import Lease
from storage.messages import QueuedOutbound
from storage.models import Contact, JobStatus, Message, MessageAuthor, MessageStatus
from storage.types import utcnow

log = logging.getLogger("smsagent.outbox")

SEND_JOB = "send"
# Longest text a business may send in one message (carriers concatenate up to 10 segments).
MAX_API_BODY = 1600


def compose_reply(settings: Settings, text: str) -> ComposedSms | None:
    """The model's text as an SMS, or None when nothing sendable is left of it."""
    try:
        return compose_sms(
            text,
            max_segments=settings.sms_max_segments,
            allowed_link_hosts=settings.sms_allowed_link_hosts,
        )
    except ValueError:
        return None


def send_key(message_id: str) -> str:
    return f"send:{message_id}"


@dataclass(frozen=True)
class Queued:
    message: QueuedOutbound
    job_id: int | None


async def queue_text(
    deps: Deps,
    *,
    session: AsyncSession,
    workspace_id: str,
    conversation_id: str,
    sender: str,
    to: str,
    provider: str,
    text: str,
    author: MessageAuthor,
    agent_run_id: str | None = None,
    composed: ComposedSms | None = None,
    lease: tuple[str, float] | None = None,
) -> Queued:
    """Queue a text for delivery, in the caller's transaction.

    Model text arrives `composed` (markdown stripped, links allow-listed, segment budget kept);
    text from the business or a person is sent as written, only normalised to GSM-7.
    With `lease` (token, seconds) the send job is born leased to the caller, who sends at once.
    """
    settings = deps.settings
    if composed is not None:
        body, encoding, segments = composed.body, composed.encoding, composed.segments
    else:
        body = normalize_gsm(text).strip()
        info = count_segments(body)
        encoding, segments = info.encoding, info.segments
    message = await messages.add_outbound(
        session=session,
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        author=author,
        body=body,
        from_number=sender,
        to_number=to,
        provider=provider,
        segments=segments,
        encoding=str(encoding),
        cost_cents=estimate_cost(segments, per_segment_cents=settings.sms_cost_per_segment_cents),
        agent_run_id=agent_run_id,
    )
    job_id = await jobs.enqueue(
        conn=await session.connection(),
        kind=SEND_JOB,
        key=send_key(message.id),
        payload={"message_id": message.id},
        max_attempts=settings.job_max_attempts,
        lease=lease,
    )
    await conversations.touch_conversation(session=session, conversation_id=conversation_id)
    return Queued(message, job_id)


class SendHandler:
    """Runs `send` jobs: one read, then a committed `sending` mark, the provider call, and
    one commit of the outcome."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def run(self, job: Lease) -> None:
        deps = self._deps
        message_id = str(job.payload["message_id"])
        async with deps.reads() as session:
            found = await messages.outbound_with_recipient(session=session, message_id=message_id)
        if found is None or found.message.status not in (
            MessageStatus.QUEUED,
            MessageStatus.SENDING,
        ):
            # Gone, or settled already (a job re-run after its outcome was stored).
            await self._finish(job)
            return
        message = found.message
        refusal = _refusal(message, opted_out=found.opted_out, blocked=found.blocked)
        if refusal is not None:
            async with deps.sessions() as session, session.begin():
                await self._give_up(session, job, message, *refusal)
            return
        provider = deps.provider(message.provider)
        if provider is None:
            async with deps.sessions() as session, session.begin():
                await self._give_up(
                    session,
                    job,
                    message,
                    "provider_not_configured",
                    f"provider {message.provider!r} is not configured",
                )
            return
        async with deps.sessions() as session, session.begin():
            claimed = await messages.claim_for_sending(session=session, message_id=message.id)
        if not claimed:
            # Moved on since the read (another worker took over a lapsed lease): run again,
            # and the next read settles it.
            raise SendRaced(message.id)
        sms = OutboundSms(
            message_id=message.id,
            conversation_id=message.conversation_id,
            to=message.to_number,
            sender=message.from_number,
            body=message.body,
            media_urls=tuple(message.media_urls),
        )
        try:
            result = await provider.send(sms)
        except ProviderError as exc:
            await self._failed(job, message, exc)
            return
        async with deps.sessions() as session, session.begin():
            status = MessageStatus(result.status) if result.status in _KNOWN else None
            await messages.advance_status(
                session=session,
                message_id=message.id,
                status=status or MessageStatus.SENT,
                provider_message_id=result.provider_message_id,
            )
            await jobs.finish(conn=await session.connection(), lease=job)
        log.info(
            "sms.sent message_id=%s conversation_id=%s provider=%s provider_id=%s to=%s",
            message.id,
            message.conversation_id,
            message.provider,
            result.provider_message_id,
            mask_phone(message.to_number),
        )

    async def exhausted(self, job: Lease, error: str) -> None:
        async with self._deps.sessions() as session, session.begin():
            message = await messages.get_message(
                session=session, message_id=str(job.payload["message_id"])
            )
            if message is not None:
                await self._give_up(session, job, message, "send_failed", error)
            else:
                await jobs.finish(
                    conn=await session.connection(), lease=job, status=JobStatus.FAILED
                )

    async def _finish(self, job: Lease) -> None:
        async with self._deps.engine.begin() as conn:
            await jobs.finish(conn=conn, lease=job)

    async def _failed(self, job: Lease, message: Message, exc: ProviderError) -> None:
        deps = self._deps
        async with deps.sessions() as session, session.begin():
            if exc.retryable and job.attempts < job.max_attempts:
                backoff = min(2.0**job.attempts, 300.0)
                delay = max(exc.retry_after or 0.0, backoff)
                await messages.set_status(
                    session=session, message_id=message.id, status=MessageStatus.QUEUED
                )
                await jobs.retry_later(
                    conn=await session.connection(),
                    lease=job,
                    run_at=utcnow() + timedelta(seconds=delay),
                    error=str(exc),
                )
                log.warning(
                    "sms.retry message_id=%s code=%s attempt=%d delay_s=%.1f",
                    message.id,
                    exc.code,
                    job.attempts,
                    delay,
                )
                return
            if exc.recipient_opted_out:
                contact = await _recipient(session, message)
                await contacts.set_opt_out(
                    session=session, contact_id=contact.id, opted_out=True, source="carrier"
                )
                await events.add_event(
                    session=session,
                    workspace_id=message.workspace_id,
                    conversation_id=message.conversation_id,
                    type="contact.opted_out",
                    data={"source": "carrier", "code": exc.code},
                )
            await self._give_up(session, job, message, exc.code or "error", exc.message)

    async def _give_up(
        self,
        session: AsyncSession,
        job: Lease,
        message: Message,
        code: str,
        reason: str,
    ) -> None:
        status = MessageStatus.CANCELED if code in _NOT_ATTEMPTED else MessageStatus.FAILED
        await messages.advance_status(
            session=session,
            message_id=message.id,
            status=status,
            error_code=code,
            error_message=reason,
        )
        await jobs.finish(conn=await session.connection(), lease=job)
        log.warning(
            "sms.not_sent message_id=%s conversation_id=%s code=%s",
            message.id,
            message.conversation_id,
            code,
        )


class SendRaced(Exception):
    """The message changed between the send's read and its claim."""


_KNOWN = {s.value for s in MessageStatus}
_NOT_ATTEMPTED = {"contact_opted_out", "contact_blocked", "provider_not_configured"}


def _refusal(message: Message, *, opted_out: bool, blocked: bool) -> tuple[str, str] | None:
    if message.status == MessageStatus.SENDING:
        return ("send_outcome_unknown", "interrupted while sending; not retried to avoid a repeat")
    if blocked:
        return ("contact_blocked", "the contact is blocked")
    # The opt-out confirmation itself must still go out.
    if opted_out and message.author != MessageAuthor.SYSTEM:
        return ("contact_opted_out", "the contact opted out")
    return None


async def _recipient(session: AsyncSession, message: Message) -> Contact:
    conversation = await conversations.get_conversation(
        session=session, conversation_id=message.conversation_id
    )
    contact = (
        await contacts.get_contact(session=session, contact_id=conversation.contact_id)
        if conversation
        else None
    )
    if contact is None:
        raise LookupError(f"no contact for message {message.id}")
    return contact
