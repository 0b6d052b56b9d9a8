"""Twilio: the Messages API client (outbound) and its webhooks (inbound texts, statuses).

Signatures are checked with Twilio's own `RequestValidator` against the public URL the service
is reached at, never the URL the request arrived on (a proxy or tunnel changes that one);
behind a proxy that says where the request was sent (SMSAGENT_TRUST_FORWARDED_HEADERS), that
URL is tried too.
"""

from __future__ import annotations

import hmac
import logging
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator

from agent.delivery import record_delivery
from agent.deps import Deps
from agent.inbound import InboundSms, accept_inbound
from agent.providers import OutboundSms, ProviderError, SendResult
from storage.models import MessageStatus
from webhooks.carriers import Delivery, forwarded_urls, phone_field
from webhooks.errors import HttpError
from webhooks.sending import post, refused

log = logging.getLogger("smsagent.twilio")

SMS_PATH = "/webhooks/twilio/sms"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Media items a text may carry (Twilio sends at most 10).
MAX_MEDIA = 10
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


class TwilioCarrier:
    """Twilio's webhooks: inbound texts (with their media) and delivery statuses."""

    name = "twilio"

    async def check(self, deps: Deps, delivery: Delivery) -> str | None:
        settings = deps.settings
        if settings.twilio_auth_token is None or settings.public_url is None:
            return "Twilio is not configured (SMSAGENT_TWILIO_AUTH_TOKEN, SMSAGENT_PUBLIC_URL)"
        signature = delivery.header("x-twilio-signature")
        if not signature:
            return "no X-Twilio-Signature header"
        params = delivery.form
        token = settings.twilio_auth_token.get_secret_value()
        urls = [settings.public_url + delivery.path]
        urls += forwarded_urls(delivery, trust=settings.trust_forwarded_headers)
        if any(
            signature_valid(auth_token=token, url=u, params=params, signature=signature)
            for u in urls
        ):
            return None
        return (
            "the X-Twilio-Signature does not match (check SMSAGENT_PUBLIC_URL and the auth token)"
        )

    async def process(self, deps: Deps, delivery: Delivery) -> web.Response:
        if delivery.route == STATUS_CALLBACK_PATH:
            return await _status(deps, delivery)
        return await _inbound(deps, delivery)


async def _inbound(deps: Deps, delivery: Delivery) -> web.Response:
    params = delivery.form
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        raise HttpError(400, "missing_fields", "missing MessageSid", details=["MessageSid"])
    media = tuple(
        params[f"MediaUrl{i}"]
        for i in range(_count(params.get("NumMedia")))
        if params.get(f"MediaUrl{i}")
    )
    inbound = InboundSms(
        provider="twilio",
        provider_message_id=sid,
        from_number=phone_field(params.get("From"), "From"),
        to_number=phone_field(params.get("To") or deps.settings.from_number, "To"),
        body=params.get("Body", ""),
        media_urls=media,
    )
    await accept_inbound(deps, inbound)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


async def _status(deps: Deps, delivery: Delivery) -> web.Response:
    params = delivery.form
    sid = params.get("MessageSid") or params.get("SmsSid")
    raw = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    status = STATUS_MAP.get(raw)
    if not sid or status is None:
        # Statuses we do not track (e.g. "receiving") are acknowledged and dropped.
        return web.Response(status=204)
    await record_delivery(
        deps,
        provider="twilio",
        provider_message_id=sid,
        status=MessageStatus(status),
        message_id=delivery.query.get("message_id"),
        error_code=params.get("ErrorCode") or None,
    )
    return web.Response(status=204)


def _count(value: str | None) -> int:
    try:
        return max(0, min(int(value or 0), MAX_MEDIA))
    except ValueError:
        return 0


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
        messaging_service_sid: str | None = None,
        advanced_opt_out: bool = False,
    ) -> None:
        self._http = http
        self._url = f"{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._api_origin = _origin(api_url)
        self._auth = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._public_url = public_url
        self._service = messaging_service_sid
        # Twilio answers STOP / START / HELP itself (Advanced Opt-Out on the Messaging Service).
        self.answers_keywords = advanced_opt_out

    def media_headers(self, url: str) -> dict[str, str]:
        # Media of an account with "HTTP Basic Auth for media" needs the account's credentials;
        # only Twilio's own API host gets them (its redirect to storage goes without).
        return {"Authorization": self._auth} if _origin(url) == self._api_origin else {}

    async def send(self, sms: OutboundSms) -> SendResult:
        form: list[tuple[str, str]] = [("To", sms.to), ("From", sms.sender), ("Body", sms.body)]
        if self._service is not None:
            # With From as well, Twilio sends from our number with the service's features.
            form.append(("MessagingServiceSid", self._service))
        form.append(
            (
                "StatusCallback",
                f"{self._public_url}{STATUS_CALLBACK_PATH}?message_id={sms.message_id}",
            )
        )
        form += [("MediaUrl", url) for url in sms.media_urls]
        answer = await post(
            self._http,
            self._url,
            provider="Twilio",
            data=form,
            headers={"Authorization": self._auth},
        )
        if not answer.ok:
            code = answer.body.get("code")
            raise refused(answer, answer.body.get("message"), code, opted_out=code == UNSUBSCRIBED)
        sid = str(answer.body.get("sid") or "")
        if not sid:
            raise ProviderError("Twilio accepted the message but returned no sid")
        return SendResult(provider_message_id=sid, status="sent")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port
