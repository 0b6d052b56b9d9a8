"""An office that keeps its own calendar hears of a move through a signed webhook, kept with the
change and retried until its endpoint takes it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from agent.evals.scripted import ScriptedLLM, reply, tool_call
from agent.hooks import sign, verify
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Service, wait_until
from tests.test_appointment_book import TUE, _ask, _at, _local, _started

SECRET = "whsec_0123456789abcdef"


class Receiver:
    """The business's endpoint: records each move request, answering from a list of statuses.
    The other events (texts sent and received) are taken and left out (tests/test_status_hooks.py
    looks at them)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[bytes, str | None]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if json.loads(body)["type"] != "appointment.reschedule_requested":
            return web.json_response({"ok": True})
        self.requests.append((body, request.headers.get("Smsagent-Signature")))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver([503])
    app = web.Application()
    app.router.add_post("/hooks", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield endpoint
    await runner.cleanup()


def _their_check(body: bytes, header: str | None) -> bool:
    """The receiver's side, written from the documented scheme rather than our own code."""
    parts = dict(p.split("=", 1) for p in (header or "").split(","))
    mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    return abs(time.time() - int(parts["t"])) < 300 and hmac.compare_digest(
        mac.hexdigest(), parts["v1"]
    )


async def _move_asked(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub, url: str | None
) -> tuple[Service, str]:
    """An office with its own calendar (and a webhook at `url`, if given); the customer asks to
    move their visit and the model asks the office. The service and the conversation's id."""
    hook = {"webhook_url": url, "webhook_secret": SECRET} if url else {}
    service = await make_service(scheduling="external", worker_poll_seconds=0.05, **hook)
    conversation_id = await _started(service)
    llm.script(
        tool_call("reschedule_appointment", new_start=_local(TUE, 9)),
        reply("I've asked the office to move it; they will confirm with you."),
    )
    await _ask(service, twilio, "can we do Tuesday at 9?", "SM" + "7" * 32, 2)
    return service, conversation_id


async def test_a_move_is_sent_signed_to_the_office_and_retried_until_taken(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub, receiver: Receiver
) -> None:
    service, conversation_id = await _move_asked(make_service, llm, twilio, receiver.url)

    async def taken() -> bool:
        return len(receiver.requests) >= 2

    # The first answer is 503: the worker tries again (after its 2 s backoff).
    await wait_until(taken, within=15, what="the webhook to be retried")
    (first, _), (body, signature) = receiver.requests
    assert first == body  # the same event, the same id: the office deduplicates on it
    assert _their_check(body, signature)
    event: dict[str, Any] = json.loads(body)
    assert event["type"] == "appointment.reschedule_requested"
    assert event["id"].startswith("evt_")
    data = event["data"]
    assert data["conversation_id"] == conversation_id
    assert datetime.fromisoformat(data["appointment"]["requested_start"]) == _at(TUE, 9)
    assert data["contact"]["phone"] == "+13105551234"
    thread = await service.conversation(conversation_id)
    assert thread["appointment"]["status"] == "reschedule_requested"

    async def recorded() -> bool:
        thread = await service.conversation(conversation_id)
        return "webhook.delivered" in [e["type"] for e in thread["events"]]

    await wait_until(recorded, within=5, what="the delivery to be recorded")
    thread = await service.conversation(conversation_id)
    [delivered] = [e for e in thread["events"] if e["type"] == "webhook.delivered"]
    assert delivered["data"]["webhook_id"] == event["id"]
    assert delivered["data"]["attempts"] == 2


async def test_an_endpoint_that_refuses_is_recorded_on_the_thread(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub, receiver: Receiver
) -> None:
    receiver.statuses = [410]
    service, conversation_id = await _move_asked(make_service, llm, twilio, receiver.url)

    async def recorded() -> bool:
        thread = await service.conversation(conversation_id)
        return "webhook.failed" in [e["type"] for e in thread["events"]]

    # A 410 is final: no retry, and the thread shows it.
    await wait_until(recorded, within=10, what="the refusal to be recorded")
    assert len(receiver.requests) == 1
    thread = await service.conversation(conversation_id)
    [failed] = [e for e in thread["events"] if e["type"] == "webhook.failed"]
    assert failed["data"]["error"] == "the endpoint answered 410"


async def test_without_a_webhook_the_move_is_still_recorded(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service, conversation_id = await _move_asked(make_service, llm, twilio, None)
    thread = await service.conversation(conversation_id)
    assert thread["appointment"]["status"] == "reschedule_requested"
    assert "appointment.reschedule_requested" in [e["type"] for e in thread["events"]]


def test_a_signature_is_refused_when_altered_stale_or_cut() -> None:
    body = b'{"id":"evt_1"}'
    header = sign(SECRET, body)
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("another-secret-0123", body, header)
    assert not verify(SECRET, body, header[:-4])
    assert not verify(SECRET, body, sign(SECRET, body, int(time.time()) - 301))
    assert not verify(SECRET, body, None)
    assert not verify(SECRET, body, "t=soon,v1=00")
