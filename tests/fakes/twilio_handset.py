"""Twilio's stub as a `Handset` (tests/fakes/handset.py): texts in signed with Twilio's own
`RequestValidator`, over the public URL the service is configured with."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from tests.fakes.handset import SentSms
from tests.fakes.twilio_server import TwilioStub

_OUR_STATUS = {"delivered": "delivered", "failed": "failed", "sent": "sent"}


class TwilioHandset:
    name = "twilio"

    def __init__(self, stub: TwilioStub, public_url: str) -> None:
        self.stub = stub
        self.public_url = public_url

    def settings(self) -> dict[str, Any]:
        return {
            "sms_provider": "twilio",
            "twilio_api_url": self.stub.base_url,
            "twilio_account_sid": self.stub.account_sid,
            "twilio_auth_token": self.stub.auth_token,
        }

    async def text_in(
        self,
        service_url: str,
        *,
        sender: str,
        to: str,
        body: str,
        media: list[tuple[str, str]] | None = None,
        provider_id: str | None = None,
    ) -> int:
        sid = provider_id or ("MM" if media else "SM") + secrets.token_hex(16)
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.stub.account_sid,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": str(len(media or [])),
        }
        for i, (url, content_type) in enumerate(media or []):
            params[f"MediaUrl{i}"] = url
            params[f"MediaContentType{i}"] = content_type
        return await self._post(service_url, "/webhooks/twilio/sms", params)

    async def sent(self, n: int, *, within: float = 10.0) -> list[SentSms]:
        await self.stub.wait_for_messages(n, timeout=within)
        return [
            SentSms(
                provider_id=m["sid"],
                to=m["To"],
                sender=m.get("From", ""),
                body=m.get("Body", ""),
                media_urls=tuple(self.stub.media.get(m["sid"], [])),
                extra=m,
            )
            for m in self.stub.messages[:n]
        ]

    async def report(self, service_url: str, sms: SentSms, status: str = "delivered") -> int:
        params = {
            "MessageSid": sms.provider_id,
            "SmsSid": sms.provider_id,
            "MessageStatus": _OUR_STATUS[status],
            "AccountSid": self.stub.account_sid,
            "From": sms.sender,
            "To": sms.to,
        }
        if status == "failed":
            params["ErrorCode"] = "30003"
        # Twilio calls the StatusCallback the send gave, query and all.
        callback = str(sms.extra.get("StatusCallback", ""))
        assert callback.startswith(self.public_url), callback
        return await self._post(service_url, callback.removeprefix(self.public_url), params)

    async def _post(self, service_url: str, path: str, params: dict[str, str]) -> int:
        signature = RequestValidator(self.stub.auth_token).compute_signature(
            self.public_url + path, params
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                service_url + path, data=params, headers={"X-Twilio-Signature": signature}
            ) as response,
        ):
            await response.read()
            return response.status
