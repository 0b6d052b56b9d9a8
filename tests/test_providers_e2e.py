"""The same conversation through every provider: a kickoff goes out, its delivery comes back,
the customer answers (with a photo, in the second run), the agent uses a tool and replies, and
that reply's delivery comes back too. Each provider's stub checks its own request formats and
signs as the provider signs (tests/fakes/handset.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.evals.scripted import ScriptedLLM, reply, tool_call
from tests.conftest import ServiceFactory
from tests.fakes.avochato_server import AvochatoStub
from tests.fakes.gateway_server import GatewayStub
from tests.fakes.handset import Handset
from tests.fakes.media_server import MediaServer
from tests.fakes.telnyx_server import TelnyxStub
from tests.fakes.twilio_handset import TwilioHandset
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, PUBLIC_URL, Service, wait_until
from tests.test_kickoff import KICKOFF

PROVIDERS = ["twilio", "telnyx", "gateway", "avochato"]


@pytest.fixture(params=PROVIDERS)
async def handset(request: pytest.FixtureRequest, twilio: TwilioStub) -> AsyncIterator[Handset]:
    name = request.param
    if name == "twilio":
        yield TwilioHandset(twilio, PUBLIC_URL)
    elif name == "telnyx":
        async with TelnyxStub() as telnyx:
            yield telnyx
    elif name == "gateway":
        async with GatewayStub() as gateway:
            yield gateway
    elif name == "avochato":
        async with AvochatoStub() as avochato:
            yield avochato
    else:
        raise AssertionError(f"no handset for {name}")


@pytest.fixture
async def photo_url(twilio: TwilioStub) -> AsyncIterator[str]:
    """A real JPEG on a loopback host, as a provider's media link."""
    async with MediaServer(twilio.account_sid, twilio.auth_token) as media:
        yield media.file_url("photo.jpg")


async def _status(service: Service, conversation_id: str, message_id: str, status: str) -> bool:
    thread = await service.conversation(conversation_id)
    return any(m["id"] == message_id and m["status"] == status for m in thread["messages"])


@pytest.mark.parametrize("photo", [False, True], ids=["text", "photo"])
async def test_the_same_conversation_through_each_provider(
    make_service: ServiceFactory,
    handset: Handset,
    llm: ScriptedLLM,
    photo: bool,
    photo_url: str,
) -> None:
    service = await make_service(**handset.settings())
    base = service.url("").rstrip("/")

    status, started = await service.kickoff(**KICKOFF)
    assert status == 201, started
    conversation_id = started["conversation_id"]
    [first] = await handset.sent(1)
    assert (first.to, first.sender) == (PATIENT, FROM_NUMBER)
    assert first.body == KICKOFF["message"]
    assert await handset.report(base, first) in (200, 204)
    await wait_until(
        lambda: _status(service, conversation_id, started["message_id"], "delivered"),
        what="the kickoff delivered",
    )

    llm.script(
        tool_call("confirm_appointment"),
        reply("You're all set for Monday at 3:00 PM, Sarah!"),
    )
    media = [(photo_url, "image/jpeg")] if photo else None
    code = await handset.text_in(
        base, sender=PATIENT, to=FROM_NUMBER, body="yes I'll be there, thanks!", media=media
    )
    assert code == 200

    [_, answer] = await handset.sent(2)
    assert answer.body == "You're all set for Monday at 3:00 PM, Sarah!"
    assert (answer.to, answer.sender) == (PATIENT, FROM_NUMBER)
    assert await handset.report(base, answer) in (200, 204)

    async def answered_and_delivered() -> bool:
        thread = await service.conversation(conversation_id)
        outbound = [m for m in thread["messages"] if m["direction"] == "outbound"]
        return len(outbound) == 2 and all(m["status"] == "delivered" for m in outbound)

    await wait_until(answered_and_delivered, what="the answer delivered")
    thread: dict[str, Any] = await service.conversation(conversation_id)
    assert thread["provider"] == handset.name
    assert thread["appointment"]["status"] == "confirmed"
    [run] = thread["agent_runs"]
    assert [c["name"] for c in run["tool_calls"]] == ["confirm_appointment"]
    [inbound] = [m for m in thread["messages"] if m["direction"] == "inbound"]
    assert inbound["body"] == "yes I'll be there, thanks!"
    said = str(llm.requests[0]["messages"][-1]["content"])
    if photo:
        assert inbound["media_urls"] == [photo_url]
        [kept] = inbound["media"]
        assert kept["status"] == "stored"
        assert kept["content_type"] == "image/jpeg"
        assert "photo" in said.lower()
    else:
        assert inbound["media_urls"] == []
        assert "photo" not in said.lower()


TELNYX_NUMBER = "+15550002222"
OTHER_PATIENT = "+13105559876"


async def test_one_workspace_mixes_providers_by_number(
    make_service: ServiceFactory, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    async with TelnyxStub() as telnyx:
        service = await make_service(
            **TwilioHandset(twilio, PUBLIC_URL).settings(),
            **{k: v for k, v in telnyx.settings().items() if k != "sms_provider"},
            sender_numbers={TELNYX_NUMBER: "telnyx"},
        )
        base = service.url("").rstrip("/")

        status, by_twilio = await service.kickoff(**KICKOFF)
        assert status == 201, by_twilio
        status, by_telnyx = await service.kickoff(
            **{**KICKOFF, "to": OTHER_PATIENT, "from": TELNYX_NUMBER}
        )
        assert status == 201, by_telnyx

        [first] = await TwilioHandset(twilio, PUBLIC_URL).sent(1)
        assert (first.to, first.sender) == (PATIENT, FROM_NUMBER)
        [second] = await telnyx.sent(1)
        assert (second.to, second.sender) == (OTHER_PATIENT, TELNYX_NUMBER)

        # The answer goes back through the provider of the number the customer texted.
        llm.script(reply("Thanks! See you then."))
        code = await telnyx.text_in(base, sender=OTHER_PATIENT, to=TELNYX_NUMBER, body="ok")
        assert code == 200
        [_, answer] = await telnyx.sent(2)
        assert (answer.to, answer.sender, answer.body) == (
            OTHER_PATIENT,
            TELNYX_NUMBER,
            "Thanks! See you then.",
        )
        assert len(twilio.messages) == 1
        thread = await service.conversation(by_telnyx["conversation_id"])
        assert thread["provider"] == "telnyx"
        assert len(thread["messages"]) == 3
