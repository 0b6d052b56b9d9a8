"""Accept an inbound text: one durable write, then the worker takes it from there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from agent.deps import Deps
from agent.phones import mask_phone
from storage import conversations, jobs, messages
from storage.contacts import contact_id_for_phone
from storage.types import utcnow

log = logging.getLogger("smsagent.inbound")

TURN_JOB = "turn"


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


def turn_key(conversation_id: str) -> str:
    return f"turn:{conversation_id}"


class _Duplicate(Exception):
    """Rolls back a transaction that met a message it already has."""


async def accept_inbound(deps: Deps, inbound: InboundSms) -> Accepted:
    """Store the text and its turn job in one transaction; a repeated delivery changes nothing.

    Duplicates are found by the message insert itself (provider id is unique) rather than by a
    look-up first: the common case pays one statement less, and a duplicate rolls back whole.
    """
    try:
        async with deps.sessions() as session, session.begin():
            message_id, conversation_id = await _store(deps, session, inbound)
    except _Duplicate:
        async with deps.sessions() as session:
            existing = await messages.find_by_provider_id(
                session=session,
                provider=inbound.provider,
                provider_message_id=inbound.provider_message_id,
            )
        assert existing is not None
        log.info(
            "inbound.duplicate message_id=%s provider=%s provider_id=%s",
            existing.id,
            inbound.provider,
            inbound.provider_message_id,
        )
        return Accepted(None, existing.conversation_id, duplicate=True)
    log.info(
        "inbound.accepted message_id=%s conversation_id=%s provider=%s provider_id=%s from=%s",
        message_id,
        conversation_id,
        inbound.provider,
        inbound.provider_message_id,
        mask_phone(inbound.from_number),
    )
    deps.nudge()
    return Accepted(message_id, conversation_id, duplicate=False)


async def _store(deps: Deps, session: AsyncSession, inbound: InboundSms) -> tuple[str, str]:
    # Ids only, with Core statements: this runs for every text, inside the provider's timeout.
    contact_id = await contact_id_for_phone(
        session=session, workspace_id=deps.workspace_id, phone=inbound.from_number
    )
    conversation_id = await conversations.live_conversation_id(
        session=session,
        workspace_id=deps.workspace_id,
        contact_id=contact_id,
        sender_number=inbound.to_number,
    )
    if conversation_id is None:
        conversation_id = await conversations.insert_conversation(
            session=session,
            workspace_id=deps.workspace_id,
            contact_id=contact_id,
            sender_number=inbound.to_number,
            provider=inbound.provider,
        )
    else:
        await conversations.touch_conversation(session=session, conversation_id=conversation_id)
    message_id = await messages.insert_inbound(
        session=session,
        workspace_id=deps.workspace_id,
        conversation_id=conversation_id,
        body=inbound.body,
        from_number=inbound.from_number,
        to_number=inbound.to_number,
        provider=inbound.provider,
        provider_message_id=inbound.provider_message_id,
        media_urls=inbound.media_urls,
    )
    if message_id is None:
        raise _Duplicate
    await jobs.enqueue(
        session=session,
        kind=TURN_JOB,
        key=turn_key(conversation_id),
        payload={"conversation_id": conversation_id},
        run_at=utcnow() + timedelta(seconds=deps.settings.turn_quiet_seconds),
        max_attempts=deps.settings.job_max_attempts,
        fold=True,
    )
    return message_id, conversation_id
