"""A signed Twilio text comes in; the agent answers through Twilio; everything is kept."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agent.evals.scripted import (
    ScriptedLLM,
    hold,
    last_system_prompt,
    raw_tool_call,
    reply,
    tool_call,
    tool_names,
)
from tests.fakes.twilio_server import TwilioStub
from tests.harness import PATIENT, Database, Service, count_rows, wait_until
from tests.test_kickoff import KICKOFF

TOOLS = {
    "confirm_appointment",
    "check_availability",
    "reschedule_appointment",
    "book_appointment",
    "cancel_appointment",
    "handoff_to_human",
    "tag_contact",
    "log_event",
}


async def test_webhook_answers_at_once_while_the_model_thinks(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)
    llm.script(hold(reply("Of course! We'll see you on Monday.")))

    status, text, seconds = await service.twilio_inbound(
        "Can you remind me what time it is?", sid="SM" + "a" * 32
    )

    assert status == 200
    assert text.startswith("<?xml")
    assert "<Response/>" in text
    assert seconds < 0.5
    await llm.wait_for_requests(1)
    assert len(twilio.messages) == 1  # nothing sent while the model is thinking
    request = llm.requests[0]
    assert set(tool_names(request)) == TOOLS
    prompt = last_system_prompt(request)
    assert "Sarah Johnson" in prompt
    assert "cleaning" in prompt
    assert "Mon, Mar 10 at 3:00 PM" in prompt
    assert "Confirming upcoming cleaning appointment." in prompt
    # The customer's words arrive as a user message, never inside the instructions.
    assert "remind me what time" not in prompt
    assert request["messages"][-1] == {
        "role": "user",
        "content": "Can you remind me what time it is?",
    }

    llm.release()
    await twilio.wait_for_messages(2)
    assert twilio.messages[1]["To"] == PATIENT
    assert twilio.messages[1]["Body"] == "Of course! We'll see you on Monday."
    thread = await service.conversation(started["conversation_id"])
    assert [m["direction"] for m in thread["messages"]] == ["outbound", "inbound", "outbound"]
    [run] = thread["agent_runs"]
    assert run["model"] == "scripted-model"
    assert run["outcome"] == "replied"
    assert run["prompt_tokens"] > 0
    assert run["completion_tokens"] > 0


async def test_the_models_confirmation_shows_on_the_appointment(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(
        tool_call("confirm_appointment"),
        reply("You're all set for Monday at 3:00 PM, Sarah!"),
    )

    await service.twilio_inbound("yes I'll be there, thanks!", sid="SM" + "b" * 32)

    await twilio.wait_for_messages(2)
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    confirmed = [e for e in thread["events"] if e["type"] == "appointment.confirmed"]
    assert len(confirmed) == 1
    [run] = thread["agent_runs"]
    assert confirmed[0]["agent_run_id"] == run["id"]
    assert [c["name"] for c in run["tool_calls"]] == ["confirm_appointment"]
    # The tool's answer went back to the model before it wrote the reply.
    assert llm.requests[1]["messages"][-1]["role"] == "tool"
    assert "Confirmed" in llm.requests[1]["messages"][-1]["content"]


async def test_a_repeated_delivery_is_answered_once(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    llm.script(reply("Hi! How can we help?"))
    sid = "SM" + "c" * 32

    first = await service.twilio_inbound("hello", sid=sid)
    second = await service.twilio_inbound("hello", sid=sid)

    assert first[:2] == second[:2] == (200, first[1])
    await twilio.wait_for_messages(1)
    await asyncio.sleep(0.5)
    assert len(llm.requests) == 1
    assert len(twilio.messages) == 1
    assert await count_rows(db, "messages") == 2  # one inbound, one reply


async def test_a_forged_signature_is_refused_and_nothing_is_processed(
    service: Service, llm: ScriptedLLM, db: Database
) -> None:
    status, text, _ = await service.twilio_inbound(
        "hello", sid="SM" + "d" * 32, signature="bm90IGEgc2lnbmF0dXJl"
    )
    assert status == 403
    assert json.loads(text)["error"]["code"] == "invalid_signature"

    # Signed for the URL the request reached instead of the public one: a proxy mistake.
    status, _, _ = await service.twilio_inbound(
        "hello", sid="SM" + "d" * 32, signature_url=service.url("/webhooks/twilio/sms")
    )
    assert status == 403

    await asyncio.sleep(0.3)
    assert await count_rows(db, "messages") == 0
    assert await count_rows(db, "contacts") == 0
    assert await count_rows(db, "jobs") == 0
    assert llm.requests == []
    # Kept for `smsagent quarantine`, not lost (tests/test_quarantine.py).
    assert await count_rows(db, "quarantined_webhooks") == 2


async def test_texts_in_a_burst_get_one_turn(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, make_service: object
) -> None:
    llm.script(reply("Sure, what day works for you?"))
    for i, text in enumerate(["hi", "it's Sarah", "can I move my cleaning?"]):
        await service.twilio_inbound(text, sid=f"SM{i:032d}")

    await twilio.wait_for_messages(1)
    await asyncio.sleep(0.4)
    assert len(llm.requests) == 1
    user_turns = [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user"]
    assert user_turns == ["hi", "it's Sarah", "can I move my cleaning?"]
    assert len(twilio.messages) == 1


async def test_a_text_during_the_turn_supersedes_it(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)
    llm.script(
        hold(reply("Thursday at 9 works!")), reply("Got it, Friday then. The office will confirm.")
    )

    await service.twilio_inbound("can we do Thursday?", sid="SM" + "e" * 32)
    await llm.wait_for_requests(1)
    await service.twilio_inbound("actually Friday is better", sid="SM" + "f" * 32)
    llm.release()

    await wait_until(lambda: _has(llm, 2), what="the second model call")
    await twilio.wait_for_messages(2)
    await asyncio.sleep(0.4)
    assert [m["Body"] for m in twilio.messages[1:]] == [
        "Got it, Friday then. The office will confirm."
    ]
    second = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "user"]
    assert second[-2:] == ["can we do Thursday?", "actually Friday is better"]
    thread = await service.conversation(started["conversation_id"])
    assert [r["outcome"] for r in thread["agent_runs"]] == ["superseded", "replied"]


async def test_garbage_tool_calls_change_nothing(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(
        raw_tool_call("reschedule_appointment", '{"new_start": "not a date"'),
        tool_call("reschedule_appointment", new_start="tomorrow-ish"),
        tool_call("delete_all_patients"),
        tool_call("tag_contact", tag="<script>"),
        tool_call("log_event", type="lead", context="asked", revenue=-5),
        reply("Which day and time would suit you?"),
    )

    await service.twilio_inbound("move it please", sid="SM" + "9" * 32)

    await twilio.wait_for_messages(2)
    thread = await service.conversation(started["conversation_id"])
    assert twilio.messages[1]["Body"] == "Which day and time would suit you?", (
        thread["agent_runs"],
        len(llm.requests),
    )
    assert thread["appointment"]["status"] == "scheduled"
    assert thread["appointment"]["requested_start"] is None
    assert thread["contact"]["tags"] == []
    assert [e["type"] for e in thread["events"]] == ["conversation.started"]
    tool_results = [
        m["content"] for r in llm.requests for m in r["messages"] if m["role"] == "tool"
    ]
    assert any("not an ISO-8601" in t for t in tool_results)
    assert any("not a valid tool" in t for t in tool_results)
    assert any("Tags are" in t for t in tool_results)
    assert any("revenue must be" in t for t in tool_results)


async def _has(llm: ScriptedLLM, n: int) -> bool:
    return len(llm.requests) >= n


async def test_logs_carry_ids_never_bodies_names_or_numbers(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, started = await service.kickoff(**KICKOFF)
    llm.script(tool_call("tag_contact", tag="anxious"), reply("See you Monday, Sarah!"))

    await service.twilio_inbound("I'm nervous about the drill", sid="SM" + "4" * 32)
    await twilio.wait_for_messages(2)
    await asyncio.sleep(0.2)

    logged = caplog.text
    assert started["conversation_id"] in logged
    assert started["message_id"] in logged
    for secret in ("nervous", "See you Monday", "Sarah", "Johnson", PATIENT, "5551234"):
        assert secret not in logged, secret


async def test_a_reply_with_nothing_sendable_hands_off_instead(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(reply("https://evil.example.com/pay-now"))

    await service.twilio_inbound("how do I pay?", sid="SM" + "3" * 32)

    await twilio.wait_for_messages(2)
    assert "get back to you shortly" in twilio.messages[1]["Body"]
    assert "evil" not in twilio.messages[1]["Body"]
    thread = await service.conversation(started["conversation_id"])
    assert thread["mode"] == "human"
    assert thread["agent_runs"][-1]["outcome"] == "no_reply"
