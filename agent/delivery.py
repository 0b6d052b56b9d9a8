"""Delivery reports from providers: move an outbound message's status forward, never back."""

from __future__ import annotations

import logging

from agent import hooks
from agent.deps import Deps
from storage import messages
from storage.models import MessageDirection, MessageStatus
from storage.raw import Dialect, Plan, in_session

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
    A status that moves forward is reported to the business's webhook in the same transaction.

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
        moved, reported = await in_session(
            session,
            lambda d: _advance(d, message_id, status, provider_message_id, error_code),
        )
    if reported:
        deps.nudge(hooks.HOOK_JOB)
    log.info(
        "delivery.status message_id=%s provider_id=%s status=%s applied=%s",
        message.id,
        provider_message_id,
        status,
        moved,
    )
    return moved


def _advance(
    dialect: Dialect,
    message_id: str,
    status: MessageStatus,
    provider_message_id: str,
    error_code: str | None,
) -> Plan[tuple[bool, list[str]]]:
    """Move the status forward; whether it moved, and the webhooks that queued."""
    moved = yield from messages.advance_status_plan(
        dialect,
        message_id,
        status,
        provider_message_id=provider_message_id,
        error_code=error_code,
    )
    if not moved:
        return False, []
    return True, (yield from hooks.message_status_plan(dialect, message_id))
