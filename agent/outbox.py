"""Outbound texts: compose, queue durably, deliver through the provider at most once.

A send is queued as a message row plus a `send` job in the caller's transaction. Delivery marks
the message `sending` (committed, in the transaction that reads it) before calling the
provider; a message found in `sending` after a crash is never sent again, because the provider
may already have taken it. A reply composed by a turn is queued with its send job already leased
to the same worker, which sends it as soon as the turn commits instead of waiting for the queue
to hand it out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent import hooks
from agent.composer import (
    ComposedSms,
    compose_sms,
    count_segments,
    estimate_cost,
    normalize_gsm,
)
from agent.deps import Deps
from agent.phones import mask_phone
from agent.providers import OutboundSms, ProviderError, SendResult
from agent.settings import Settings
from storage import contacts, conversations, events, jobs, messages
from storage.jobs import Lease
from storage.messages import Outbound, QueuedOutbound
from storage.models import JobStatus, Message, MessageAuthor, MessageStatus
from storage.raw import Dialect, Plan, commit_plan
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


def queue_text_plan(
    dialect: Dialect,
    settings: Settings,
    *,
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
    media_urls: Sequence[str] = (),
    message_type: str | None = None,
    origin: str | None = None,
    send_at: datetime | None = None,
    message_id: str | None = None,
) -> Plan[Queued]:
    """Queue a text for delivery: the message, its send job, the thread's clock.

    Model text arrives `composed` (markdown stripped, links allow-listed, segment budget kept);
    text from the business or a person is sent as written, only normalised to GSM-7.
    With `lease` (token, seconds) the send job is born leased to the caller, who sends at once.
    With `send_at` the message is `scheduled` and its send job falls due then.
    """
    if composed is not None:
        body, encoding, segments = composed.body, composed.encoding, composed.segments
    else:
        body = normalize_gsm(text).strip()
        info = count_segments(body)
        encoding, segments = info.encoding, info.segments
    message = yield from messages.add_outbound_plan(
        dialect,
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
        media_urls=media_urls,
        message_type=message_type,
        origin=origin,
        send_at=send_at,
        message_id=message_id,
    )
    job_id = yield from jobs.enqueue_plan(
        dialect,
        kind=SEND_JOB,
        key=send_key(message.id),
        payload={"message_id": message.id},
        max_attempts=settings.job_max_attempts,
        lease=lease,
        run_at=send_at,
    )
    yield from conversations.touch(dialect, conversation_id)
    return Queued(message, job_id)


class SendHandler:
    """Runs `send` jobs: one transaction that reads the message and marks it `sending`, the
    provider call, and one transaction that stores the outcome."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._dialect = Dialect(deps.engine.dialect.name)

    async def run(self, job: Lease) -> None:
        deps = self._deps
        message_id = str(job.payload["message_id"])

        def may_send(outbound: Outbound) -> bool:
            return self._refusal(outbound) is None

        outbound, claimed = await commit_plan(
            deps.engine, messages.claim_for_sending(self._dialect, message_id, may_send)
        )
        if outbound is None or outbound.status not in (
            MessageStatus.QUEUED,
            MessageStatus.SCHEDULED,
            MessageStatus.SENDING,
        ):
            # Gone, or settled already (a job re-run after its outcome was stored).
            await commit_plan(deps.engine, jobs.settle_plan(self._dialect, job))
            return
        if not claimed:
            refusal = self._refusal(outbound)
            if refusal is not None:
                await self._give_up(job, outbound.id, outbound.conversation_id, *refusal)
                return
            # Moved on since the read (another worker took over a lapsed lease): run again,
            # and the next read settles it.
            raise SendRaced(outbound.id)
        provider = deps.provider(outbound.provider)
        assert provider is not None  # `may_send` refuses a provider not configured
        sms = OutboundSms(
            message_id=outbound.id,
            conversation_id=outbound.conversation_id,
            workspace_id=outbound.workspace_id,
            to=outbound.to_number,
            sender=outbound.from_number,
            body=outbound.body,
            media_urls=outbound.media_urls,
        )
        try:
            result = await provider.send(sms)
        except ProviderError as exc:
            await self._failed(job, outbound, exc)
            return
        status = MessageStatus(result.status) if result.status in _KNOWN else None
        reported = await commit_plan(
            deps.engine,
            self._settled(job, outbound, status or MessageStatus.SENT, result),
        )
        if reported:
            deps.nudge(hooks.HOOK_JOB)
        log.info(
            "sms.sent message_id=%s conversation_id=%s provider=%s provider_id=%s to=%s",
            outbound.id,
            outbound.conversation_id,
            outbound.provider,
            result.provider_message_id,
            mask_phone(outbound.to_number),
        )

    def _settled(
        self, job: Lease, outbound: Outbound, status: MessageStatus, result: SendResult
    ) -> Plan[list[str]]:
        """Store the outcome and queue the webhooks it makes (when its workspace has one);
        their ids."""
        reported: list[str] = []
        moved = yield from messages.advance_status_plan(
            self._dialect, outbound.id, status, provider_message_id=result.provider_message_id
        )
        if moved and outbound.hooked:
            reported = yield from hooks.message_status_plan(self._dialect, outbound.id)
        yield from jobs.settle_plan(self._dialect, job)
        return reported

    async def exhausted(self, job: Lease, error: str) -> None:
        message = await _read_message(self._deps, str(job.payload["message_id"]))
        if message is not None:
            await self._give_up(job, message.id, message.conversation_id, "send_failed", error)
        else:
            await commit_plan(
                self._deps.engine, jobs.settle_plan(self._dialect, job, status=JobStatus.FAILED)
            )

    def _refusal(self, outbound: Outbound) -> tuple[str, str] | None:
        if outbound.status == MessageStatus.SENDING:
            return (
                "send_outcome_unknown",
                "interrupted while sending; not retried to avoid a repeat",
            )
        if outbound.blocked:
            return ("contact_blocked", "the contact is blocked")
        if outbound.landline:
            return ("contact_landline", "the contact's number is a landline")
        # The opt-out confirmation itself must still go out.
        if outbound.opted_out and outbound.author != MessageAuthor.SYSTEM:
            return ("contact_opted_out", "the contact opted out")
        if self._deps.provider(outbound.provider) is None:
            return ("provider_not_configured", f"provider {outbound.provider!r} is not configured")
        return None

    async def _failed(self, job: Lease, outbound: Outbound, exc: ProviderError) -> None:
        dialect = self._dialect
        if exc.retryable and job.attempts < job.max_attempts:
            backoff = min(2.0**job.attempts, 300.0)
            delay = max(exc.retry_after or 0.0, backoff)
            await commit_plan(self._deps.engine, self._retry(job, outbound.id, delay, str(exc)))
            log.warning(
                "sms.retry message_id=%s code=%s attempt=%d delay_s=%.1f",
                outbound.id,
                exc.code,
                job.attempts,
                delay,
            )
            return
        before: list[Plan[Any]] = []
        if exc.recipient_opted_out:
            before.append(
                contacts.opt_out_plan(
                    dialect, outbound.contact_id, opted_out=True, source="carrier"
                )
            )
            before.append(
                events.event_plan(
                    dialect,
                    workspace_id=outbound.workspace_id,
                    conversation_id=outbound.conversation_id,
                    type="contact.opted_out",
                    data={"source": "carrier", "code": exc.code},
                )
            )
            before.append(
                hooks.workspace_hook_plan(
                    dialect,
                    outbound.workspace_id,
                    hooks.CONTACT_OPTED_OUT,
                    {
                        "contact_id": outbound.contact_id,
                        "phone": outbound.to_number,
                        "conversation_id": outbound.conversation_id,
                        "source": "carrier",
                    },
                )
            )
        await self._give_up(
            job, outbound.id, outbound.conversation_id, exc.code or "error", exc.message, before
        )

    def _retry(self, job: Lease, message_id: str, delay: float, error: str) -> Plan[None]:
        yield from messages.requeue_message(self._dialect, message_id)
        yield from jobs.settle_plan(
            self._dialect,
            job,
            status=JobStatus.QUEUED,
            error=error,
            run_at=utcnow() + timedelta(seconds=delay),
        )

    async def _give_up(
        self,
        job: Lease,
        message_id: str,
        conversation_id: str,
        code: str,
        reason: str,
        before: Sequence[Plan[Any]] = (),
    ) -> None:
        dialect = self._dialect
        status = MessageStatus.CANCELED if code in _NOT_ATTEMPTED else MessageStatus.FAILED

        def plan() -> Plan[None]:
            for step in before:
                yield from step
            if (
                yield from messages.advance_status_plan(
                    dialect, message_id, status, error_code=code, error_message=reason
                )
            ):
                yield from hooks.message_status_plan(dialect, message_id)
            yield from jobs.settle_plan(dialect, job)

        await commit_plan(self._deps.engine, plan())
        self._deps.nudge(hooks.HOOK_JOB)
        log.warning(
            "sms.not_sent message_id=%s conversation_id=%s code=%s",
            message_id,
            conversation_id,
            code,
        )


class SendRaced(Exception):
    """The message changed between the send's read and its claim."""


_KNOWN = {s.value for s in MessageStatus}
_NOT_ATTEMPTED = {
    "contact_opted_out",
    "contact_blocked",
    "contact_landline",
    "provider_not_configured",
}


async def _read_message(deps: Deps, message_id: str) -> Message | None:
    async with deps.reads() as session:
        return await messages.get_message(session=session, message_id=message_id)
