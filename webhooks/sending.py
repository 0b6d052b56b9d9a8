"""What every provider's send API client shares: one POST, its failures sorted so that a text
is retried only when the provider surely did not take it (nothing is ever sent twice).

- the connection was never made: retryable;
- no answer, or a broken one: the outcome is unknown, never retried;
- an answer: `Answer`, which the provider reads; `refused` turns a non-2xx into the error
  (429 and 5xx retryable, honouring `Retry-After`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.providers import ProviderError


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]  # the JSON object answered; {} for anything else
    reason: str
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def post(http: aiohttp.ClientSession, url: str, *, provider: str, **options: Any) -> Answer:
    """POST to `provider`'s API; a failure before an answer is a `ProviderError`."""
    try:
        async with http.post(url, **options) as response:
            return Answer(
                status=response.status,
                body=await _json(response),
                reason=response.reason or "",
                retry_after=_seconds(response.headers.get("Retry-After")),
            )
    except aiohttp.ClientConnectorError as exc:
        # The connection was never made, so the provider cannot have the text.
        raise ProviderError(
            f"cannot reach {provider}: {exc}", code="connect", retryable=True
        ) from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ProviderError(
            f"no answer from {provider} ({type(exc).__name__}); outcome unknown", code="unknown"
        ) from exc


def refused(
    answer: Answer, message: str | None, code: object = None, *, opted_out: bool = False
) -> ProviderError:
    """The error for a non-2xx answer, with the provider's own message and code."""
    return ProviderError(
        (message or answer.reason or "error")[:500],
        code=str(code)[:64] if code not in (None, "") else f"http_{answer.status}",
        retryable=answer.status == 429 or answer.status >= 500,
        retry_after=answer.retry_after,
        recipient_opted_out=opted_out,
    )


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientPayloadError):
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return float(header)
    except ValueError:
        return None
