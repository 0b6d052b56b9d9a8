"""Accept an inbound text: one durable write, then the worker takes it from there.

Texts arriving together share a transaction (`storage.batching.GroupCommit`); each webhook is
answered once its own text is committed, never before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.deps import Deps
from agent.phones import mask_phone
from storage.inbound import TURN_JOB, InboundRow, turn_key

log = logging.getLogger("smsagent.inbound")

__all__ = ["TURN_JOB", "Accepted", "InboundSms", "accept_inbound", "turn_key"]


@dataclass(frozen=True)
class InboundSms:
    provider: str
    provider_message_id: str
    from_number: str  # E.164
    to_number: str  # E.164: our number, the thread's sender for replies
    body: str
    media_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Accepted:
    message_id: str | None  # None: the provider retried a message we already have
    conversation_id: str
    duplicate: bool


async def accept_inbound(deps: Deps, inbound: InboundSms) -> Accepted:
    """Store the text and its turn job durably; a repeated delivery changes nothing."""
    settings = deps.settings
    workspace_id = await deps.numbers.workspace_for(inbound.to_number)
    stored = await deps.inbound.submit(
        InboundRow(
            workspace_id=workspace_id,
            provider=inbound.provider,
            provider_message_id=inbound.provider_message_id,
            from_number=inbound.from_number,
            to_number=inbound.to_number,
            # NUL is the one character PostgreSQL text cannot hold; no handset means it.
            body=inbound.body.replace("\x00", ""),
            media_urls=inbound.media_urls,
            turn_delay_seconds=settings.turn_quiet_seconds,
            max_attempts=settings.job_max_attempts,
        )
    )
    if stored.duplicate:
        log.info(
            "inbound.duplicate message_id=%s provider=%s provider_id=%s",
            stored.message_id,
            inbound.provider,
            inbound.provider_message_id,
        )
        return Accepted(None, stored.conversation_id, duplicate=True)
    log.info(
        "inbound.accepted message_id=%s conversation_id=%s provider=%s provider_id=%s from=%s",
        stored.message_id,
        stored.conversation_id,
        inbound.provider,
        inbound.provider_message_id,
        mask_phone(inbound.from_number),
    )
    return Accepted(stored.message_id, stored.conversation_id, duplicate=False)
