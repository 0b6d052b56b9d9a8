"""Keywords answered without the model: STOP, START, HELP, and "Y" to a pending confirmation."""

from __future__ import annotations

import asyncio

from agent.evals.scripted import ScriptedLLM
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, count_rows
from tests.test_kickoff import KICKOFF


async def test_stop_confirms_once_and_blocks_later_kickoffs(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub, db: Database
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)

    await service.twilio_inbound("  Stop ", sid="SM" + "1" * 32)
    await twilio.wait_for_messages(2)
    assert "unsubscribed" in twilio.messages[1]["Body"]
    assert "START" in twilio.messages[1]["Body"]

    await service.twilio_inbound("STOP", sid="SM" + "2" * 32)
    await service.twilio_inbound("why did you text me", sid="SM" + "3" * 32)
    await asyncio.sleep(0.5)
    assert len(twilio.messages) == 2  # no second confirmation, nothing else
    assert llm.requests == []

    conversations_before = await count_rows(db, "conversations")
    status, body = await service.kickoff(**KICKOFF)
    assert status == 409
    assert body["error"]["code"] == "contact_opted_out"
    assert await count_rows(db, "conversations") == conversations_before

    thread = await service.conversation(started["conversation_id"])
    assert thread["contact"]["opted_out"] is True
    opt_outs = [e for e in thread["events"] if e["type"] == "contact.opted_out"]
    assert [e["data"]["source"] for e in opt_outs] == ["keyword"]


async def test_start_opts_back_in(service: Service, twilio: TwilioStub) -> None:
    await service.kickoff(**KICKOFF)
    await service.twilio_inbound("STOP", sid="SM" + "4" * 32)
    await twilio.wait_for_messages(2)

    await service.twilio_inbound("start", sid="SM" + "5" * 32)
    await twilio.wait_for_messages(3)
    assert "resubscribed" in twilio.messages[2]["Body"]
    status, _ = await service.kickoff(**KICKOFF)
    assert status == 201


async def test_a_bare_y_confirms_without_the_model(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)

    await service.twilio_inbound("Y", sid="SM" + "6" * 32)

    await twilio.wait_for_messages(2)
    assert twilio.messages[1]["Body"] == (
        "Thanks, Sarah! Your cleaning appointment on Mon, Mar 10 at 3:00 PM is confirmed. "
        "See you then."
    )
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    assert [
        e["data"].get("source") for e in thread["events"] if e["type"] == "appointment.confirmed"
    ] == ["fast_path"]
    assert llm.requests == []
    [run] = thread["agent_runs"]
    assert run["model"] is None
    assert run["outcome"] == "confirm"


async def test_y_with_nothing_to_confirm_goes_to_the_model(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    await service.twilio_inbound("yes", sid="SM" + "7" * 32)
    await twilio.wait_for_messages(1)
    assert len(llm.requests) == 1


async def test_help_names_the_business(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    await service.twilio_inbound("HELP", sid="SM" + "8" * 32)
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["Body"].startswith("Bright Smiles Dental:")
    assert "STOP" in twilio.messages[0]["Body"]
    assert llm.requests == []


async def test_without_a_model_a_person_follows_up(
    make_service: ServiceFactory, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    service = await make_service(llm_base_url=None)
    _, started = await service.kickoff(**KICKOFF)

    await service.twilio_inbound("Do you take Delta Dental insurance?", sid="SM" + "a1" * 16)
    await twilio.wait_for_messages(2)
    assert "get back to you shortly" in twilio.messages[1]["Body"]

    await service.twilio_inbound("hello?", sid="SM" + "a2" * 16)
    await asyncio.sleep(0.5)
    assert len(twilio.messages) == 2  # one polite reply, then the thread waits for a person
    thread = await service.conversation(started["conversation_id"])
    assert thread["mode"] == "human"
    assert thread["status"] == "pending"
    assert thread["handoff_reason"] == "no model configured"
    assert llm.requests == []

    # The fast path still works while a person has the thread.
    await service.twilio_inbound("STOP", sid="SM" + "a3" * 16)
    await twilio.wait_for_messages(3)
    assert "unsubscribed" in twilio.messages[2]["Body"]


async def test_a_yes_to_the_person_who_has_the_thread_confirms_nothing(
    make_service: ServiceFactory, twilio: TwilioStub
) -> None:
    service = await make_service(llm_base_url=None)
    _, started = await service.kickoff(**KICKOFF)
    await service.twilio_inbound("Can someone call me about my bill?", sid="SM" + "c1" * 16)
    await twilio.wait_for_messages(2)

    # The person asks "can you do 4pm instead?" from their own phone; the customer says yes.
    await service.twilio_inbound("Y", sid="SM" + "c2" * 16)
    await asyncio.sleep(0.5)
    assert len(twilio.messages) == 2
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "scheduled"
    assert thread["mode"] == "human"


async def test_natural_language_revocation_opts_out(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await service.twilio_inbound("please stop texting me", sid="SM" + "b1" * 16)
    await twilio.wait_for_messages(2)
    thread = await service.conversation(started["conversation_id"])
    assert thread["contact"]["opted_out"] is True
    assert thread["events"][-1]["data"]["source"] == "natural_language"
    assert llm.requests == []


async def test_an_emergency_goes_to_a_person_at_once_without_the_model(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)

    await service.twilio_inbound("my face is swelling and it hurts a lot", sid="SM" + "7" * 32)
    await twilio.wait_for_messages(2)

    assert llm.requests == []
    body = twilio.messages[1]["Body"]
    assert "call 911" in body
    assert "someone will contact you" in body
    thread = await service.conversation(started["conversation_id"])
    assert thread["mode"] == "human"
    assert thread["handoff_reason"] == "emergency: face is swelling"
    types = [e["type"] for e in thread["events"]]
    assert "conversation.emergency" in types
    assert "conversation.handoff" in types
    assert [r["outcome"] for r in thread["agent_runs"]] == ["emergency"]


async def test_fixed_replies_answer_in_spanish_to_a_customer_writing_spanish(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    await twilio.wait_for_messages(1)

    await service.twilio_inbound("Sí", sid="SM" + "8" * 32)
    await twilio.wait_for_messages(2)
    assert "Su cita está confirmada" in twilio.messages[1]["Body"]

    await service.twilio_inbound("se me hincha la cara y me duele mucho", sid="SM" + "9" * 32)
    await twilio.wait_for_messages(3)
    assert "llame al 911" in twilio.messages[2]["Body"]
    assert llm.requests == []
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    assert thread["mode"] == "human"
