"""Delivery reports from providers: move an outbound message's status forward, never back."""

from __future__ import annotations

import logging

from agent.deps import Deps
from storage import messages
from storage.models import MessageDirection, MessageStatus
from storage.raw import in_session

log = logging.getLogger("smsagent.delivery")


async def record_delivery(
    deps: Deps,
    *,
    provider: str,
    provider_message_id: str,
    status: MessageStatus,
    message_id: str | None = None,
    error_code: str | None = None,
) -> bool:
    """Apply a provider's status report; False when it matched nothing or came too late.

    `message_id` is ours, carried in the callback URL: a report can arrive before the send's
    own response has stored the provider's id.
    """
    async with deps.sessions() as session, session.begin():
        message = (
            await messages.get_message(session=session, message_id=message_id)
            if message_id
            else None
        )
        if message is None or message.provider != provider:
            message = await messages.find_by_provider_id(
                session=session, provider=provider, provider_message_id=provider_message_id
            )
        if message is None or message.direction != MessageDirection.OUTBOUND:
            log.info(
                "delivery.unmatched provider=%s provider_id=%s status=%s",
                provider,
                provider_message_id,
                status,
            )
            return False
        message_id = message.id
        moved = await in_session(
            session,
            lambda d: messages.advance_status_plan(
                d,
                message_id,
                status,
                provider_message_id=provider_message_id,
                error_code=error_code,
            ),
        )
    log.info(
        "delivery.status message_id=%s provider_id=%s status=%s applied=%s",
        message.id,
        provider_message_id,
        status,
        moved,
    )
    return moved
