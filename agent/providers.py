"""The SMS provider contract, and the built-in console provider.

Providers that speak HTTP (Twilio, …) live at the edge and implement `SmsProvider`; the
conversation core only sees this Protocol.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from agent.phones import mask_phone

log = logging.getLogger("smsagent.providers")


@dataclass(frozen=True)
class OutboundSms:
    message_id: str
    conversation_id: str
    to: str
    sender: str
    body: str
    media_urls: tuple[str, ...] = ()
    # Whose text it is (a provider with per-workspace settings, like the gateway, needs it).
    workspace_id: str = ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    # What the provider said about the message: usually "sent"/"queued", "delivered" for console.
    status: str = "sent"


@dataclass
class ProviderError(Exception):
    """A send the provider refused or could not take.

    `retryable` is set only when the provider surely did not accept the message (rate limits,
    outages, refused connections); an unknown outcome is not retried, so nothing is sent twice.
    """

    message: str
    code: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    # The recipient has opted out at the carrier or provider level.
    recipient_opted_out: bool = False

    def __str__(self) -> str:
        return f"{self.code or 'error'}: {self.message}"


class SmsProvider(Protocol):
    name: str
    # The provider itself answers STOP / START / HELP (Twilio Advanced Opt-Out, …): the opt-out
    # is still recorded, but no confirmation of ours is sent.
    answers_keywords: bool

    async def send(self, sms: OutboundSms) -> SendResult: ...

    def media_headers(self, url: str) -> dict[str, str]:
        """Headers that fetch a text's media from `url` (the provider's auth where the URL is
        the provider's own; never sent to another host)."""
        ...


@dataclass
class ConsoleProvider:
    """Delivers to nowhere: the message is already stored; it is logged (without its body)
    and counts as delivered at once. `smsagent simulate` reads replies back from storage."""

    name: str = "console"
    answers_keywords: bool = False
    sent: list[OutboundSms] = field(default_factory=list)

    def media_headers(self, url: str) -> dict[str, str]:
        return {}

    async def send(self, sms: OutboundSms) -> SendResult:
        self.sent.append(sms)
        log.info(
            "console.sms.delivered message_id=%s conversation_id=%s to=%s",
            sms.message_id,
            sms.conversation_id,
            mask_phone(sms.to),
        )
        return SendResult(provider_message_id=f"CON{secrets.token_hex(16)}", status="delivered")
