"""What the end-to-end conversation test needs of each provider's stub, so one test runs the
same conversation through every provider: a customer's handset on one side (texts in, signed
as the provider signs them), the provider's send API on the other (what we sent, and its
delivery statuses back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SentSms:
    """A text as it reached the provider's send API."""

    provider_id: str  # the id the stub gave it
    to: str
    sender: str
    body: str
    media_urls: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class Handset(Protocol):
    """A provider's stub, seen from the end-to-end test."""

    name: str  # the provider's name in settings ("twilio", "telnyx", …)

    def settings(self) -> dict[str, Any]:
        """Settings overrides that make this provider the one SMSAGENT_FROM_NUMBER sends by
        (besides `public_url`, which the harness sets)."""
        ...

    async def text_in(
        self,
        service_url: str,
        *,
        sender: str,
        to: str,
        body: str,
        media: list[tuple[str, str]] | None = None,  # (url, content type)
        provider_id: str | None = None,
    ) -> int:
        """POST an inbound text to the service at `service_url` (its base URL), signed as the
        provider signs it; returns the HTTP status."""
        ...

    async def sent(self, n: int, *, within: float = 10.0) -> list[SentSms]:
        """The first `n` texts that reached the send API, waiting up to `within` seconds."""
        ...

    async def report(self, service_url: str, sms: SentSms, status: str = "delivered") -> int:
        """POST a signed delivery status for `sms` ("delivered" / "failed" in our words);
        returns the HTTP status."""
        ...
