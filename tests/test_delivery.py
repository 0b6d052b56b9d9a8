"""Delivery: Twilio status callbacks, rate limits, permanent errors."""

from __future__ import annotations

import asyncio

from tests.fakes.twilio_server import TwilioStub
from tests.harness import PUBLIC_URL, Service, wait_until
from tests.test_kickoff import KICKOFF


async def _status(service: Service, message_id: str) -> str:
    return str((await _message(service, message_id))["status"])


async def _message(service: Service, message_id: str) -> dict[str, object]:
    status, body, _ = await service.request("GET", "/v1/conversations")
    assert status == 200
    for item in body["data"]:
        thread = await service.conversation(item["id"])
        for message in thread["messages"]:
            if message["id"] == message_id:
                return dict(message)
    raise AssertionError(f"no message {message_id}")


async def test_statuses_only_move_forward(service: Service, twilio: TwilioStub) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)
    message_id = started["message_id"]
    sid = twilio.messages[0]["sid"]
    callback = f"{PUBLIC_URL}/webhooks/twilio/status?message_id={message_id}"

    async def post(status: str, error_code: str | None = None) -> int:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": twilio.account_sid}
        if error_code:
            params["ErrorCode"] = error_code
        code, _, _ = await service.twilio_post(
            f"/webhooks/twilio/status?message_id={message_id}", params, signature_url=callback
        )
        return code

    await wait_until(lambda: _is(service, message_id, "sent"), what="the send to be recorded")
    assert await post("delivered") == 204
    assert await post("sent") == 204  # late and out of order
    assert await _status(service, message_id) == "delivered"
    message = await _message(service, message_id)
    assert message["delivered_at"] is not None


async def test_failed_delivery_keeps_the_error_code(service: Service, twilio: TwilioStub) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)
    await wait_until(lambda: _is(service, started["message_id"], "sent"), what="sent")
    status, _ = await twilio.send_status_callback(
        service.url(f"/webhooks/twilio/status?message_id={started['message_id']}"),
        twilio.messages[0]["sid"],
        "undelivered",
        error_code="30003",
    )
    # Signed for the local URL, not the public one: refused, nothing changes.
    assert status == 403
    params = {
        "MessageSid": twilio.messages[0]["sid"],
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
    }
    path = f"/webhooks/twilio/status?message_id={started['message_id']}"
    code, _, _ = await service.twilio_post(path, params)
    assert code == 204
    message = await _message(service, started["message_id"])
    assert message["status"] == "undelivered"
    assert message["error_code"] == "30003"


async def test_rate_limits_are_retried_after_the_wait(service: Service, twilio: TwilioStub) -> None:
    twilio.fail_next(status=429, code=20429, message="Too Many Requests", retry_after=1)
    _, started = await service.kickoff(**KICKOFF)

    await twilio.wait_for_messages(1, timeout=10)
    assert [r["status"] for r in twilio.requests] == [429, 201]
    assert await _status(service, started["message_id"]) == "sent"


async def test_an_unsubscribed_recipient_is_not_retried(
    service: Service, twilio: TwilioStub
) -> None:
    twilio.fail_next(status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    _, started = await service.kickoff(**KICKOFF)

    await wait_until(lambda: _is(service, started["message_id"], "failed"), what="failure")
    await asyncio.sleep(0.3)
    assert len(twilio.requests) == 1
    thread = await service.conversation(started["conversation_id"])
    assert thread["messages"][0]["error_code"] == "21610"
    assert thread["contact"]["opted_out"] is True
    status, _ = await service.kickoff(**KICKOFF)
    assert status == 409


async def _is(service: Service, message_id: str, status: str) -> bool:
    return await _status(service, message_id) == status
