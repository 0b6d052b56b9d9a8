"""Twilio: the Messages API client (outbound) and webhook signature checks (inbound).

Signatures are checked with Twilio's own `RequestValidator` against the public URL the service
is reached at, never the URL the request arrived on (a proxy or tunnel changes that one).
"""

from __future__ import annotations

import hmac
import logging
from functools import lru_cache
from typing import Any

import aiohttp
from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator

from agent.providers import OutboundSms, ProviderError, SendResult

log = logging.getLogger("smsagent.twilio")

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# Twilio: "Attempt to send to unsubscribed recipient".
UNSUBSCRIBED = 21610

# Twilio's message statuses in ours. Anything Twilio holds counts as sent by us.
STATUS_MAP = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "canceled",
}


def signature_valid(
    *, auth_token: str, url: str, params: MultiDictProxy[str], signature: str | None
) -> bool:
    """Twilio's own check. The URL exactly as configured is tried first, by one HMAC; only a
    mismatch goes on to the SDK's full check (the URL with and without its default port)."""
    if not signature:
        return False
    validator = _validator(auth_token)
    if "bodySHA256" not in url and hmac.compare_digest(
        validator.compute_signature(url, params), signature
    ):
        return True
    return bool(validator.validate(url, params, signature))


@lru_cache(maxsize=8)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)


class TwilioProvider:
    name = "twilio"

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_url: str,
        account_sid: str,
        auth_token: str,
        public_url: str,
    ) -> None:
        self._http = http
        self._url = f"{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._public_url = public_url

    async def send(self, sms: OutboundSms) -> SendResult:
        form: list[tuple[str, str]] = [
            ("To", sms.to),
            ("From", sms.sender),
            ("Body", sms.body),
            (
                "StatusCallback",
                f"{self._public_url}{STATUS_CALLBACK_PATH}?message_id={sms.message_id}",
            ),
        ]
        form += [("MediaUrl", url) for url in sms.media_urls]
        try:
            async with self._http.post(
                self._url, data=form, headers={"Authorization": self._auth}
            ) as response:
                payload = await _json(response)
                if response.status in (200, 201):
                    sid = str(payload.get("sid") or "")
                    if not sid:
                        raise ProviderError("Twilio accepted the message but returned no sid")
                    return SendResult(provider_message_id=sid, status="sent")
                raise _error(response, payload)
        except aiohttp.ClientConnectorError as exc:
            # The connection was never made, so Twilio cannot have the message.
            raise ProviderError(
                f"cannot reach Twilio: {exc}", code="connect", retryable=True
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderError(
                f"no answer from Twilio ({type(exc).__name__}); outcome unknown", code="unknown"
            ) from exc


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await response.json(content_type=None)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(response: aiohttp.ClientResponse, payload: dict[str, Any]) -> ProviderError:
    code = payload.get("code")
    message = str(payload.get("message") or response.reason or "error")
    retryable = response.status == 429 or response.status >= 500
    retry_after: float | None = None
    if header := response.headers.get("Retry-After"):
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return ProviderError(
        message,
        code=str(code) if code is not None else f"http_{response.status}",
        retryable=retryable,
        retry_after=retry_after,
        recipient_opted_out=code == UNSUBSCRIBED,
    )
