"""A reply that claims what did not happen never reaches the customer: the model is sent back
once with the facts, and failing that a person takes over; every correction is kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.claims import Claim, backed, claims_in, unbacked
from agent.evals.scripted import ScriptedLLM, reply, tool_call
from agent.prompting import rendered_prompt
from storage.models import Contact, Workspace
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Service
from tests.test_kickoff import KICKOFF


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("You're confirmed, see you Monday!", {Claim.CONFIRMED}),
        ("You're all set.", {Claim.CONFIRMED}),
        ("I've moved your appointment to Tuesday at 9.", {Claim.MOVED}),
        ("Done! It's booked for Friday.", {Claim.MOVED}),
        ("Your appointment has been cancelled.", {Claim.CANCELED}),
        ("Someone from the office will call you shortly.", {Claim.PERSON}),
        ("Our team will follow up today.", {Claim.PERSON}),
        ("Su cita está confirmada.", {Claim.CONFIRMED}),
        ("Listo, su cita fue cancelada.", {Claim.CANCELED}),
        ("Alguien de la oficina le llamará pronto.", {Claim.PERSON}),
        ("Would you like me to confirm it?", set()),
        ("It is not confirmed yet. Reply Y to confirm.", set()),
        ("I can't cancel it from here.", set()),
        ("We'll see you then!", set()),
        ("Which day works better for you?", set()),
    ],
)
def test_claims_are_read_from_statements_not_questions_or_negations(
    text: str, claims: set[Claim]
) -> None:
    assert claims_in(text) == claims


def test_a_claim_is_backed_by_what_a_tool_did_or_what_was_already_so() -> None:
    confirmed = [{"name": "confirm_appointment", "result": "Confirmed. Tell the customer..."}]
    refused = [
        {"name": "reschedule_appointment", "result": "Tue, Dec 8 at 10:00 AM is already taken."}
    ]
    failed = [{"name": "cancel_appointment", "result": "Canceled.", "error": True}]
    assert backed(confirmed) == {Claim.CONFIRMED}
    assert backed(refused) == set()
    assert backed(failed) == set()
    assert unbacked("You're confirmed and moved to Tuesday.", confirmed) == {Claim.MOVED}
    assert unbacked("Yes, you're confirmed.", [], standing=["confirmed"]) == set()
    asked = [{"name": "reschedule_appointment", "result": "Asked the office to move it to ..."}]
    assert unbacked("I asked the office; they will call you to confirm.", asked) == set()


async def test_a_confirmation_no_tool_made_is_withheld_and_a_person_takes_over(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(
        reply("You're confirmed, see you Monday!"),
        reply("Great news, you are confirmed!"),
    )

    await service.twilio_inbound("is that still on?", sid="SM" + "c" * 32)
    await twilio.wait_for_messages(2)

    body = twilio.messages[1]["Body"]
    assert "confirmed" not in body.lower()
    assert "get back to you" in body  # the hand-off reply: true, since a person now has it
    # The model was sent back once, with the facts, as an instruction rather than a customer text.
    assert len(llm.requests) == 2
    note = llm.requests[1]["messages"][-1]
    assert note["role"] == "system"
    assert "no tool did anything" in note["content"]
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "scheduled"
    assert thread["mode"] == "human"
    [run] = thread["agent_runs"]
    assert run["outcome"] == "unbacked_claim"
    assert [c["action"] for c in run["corrections"]] == ["asked_again", "withheld"]
    assert run["corrections"][0]["claims"] == ["confirmed"]
    assert run["corrections"][0]["reply"] == "You're confirmed, see you Monday!"


async def test_sent_back_with_the_facts_the_model_does_it_properly(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(
        reply("You're confirmed!"),
        tool_call("confirm_appointment"),
        reply("All done, you're confirmed for Monday."),
    )

    await service.twilio_inbound("yes I'll be there", sid="SM" + "d" * 32)
    await twilio.wait_for_messages(2)

    assert twilio.messages[1]["Body"] == "All done, you're confirmed for Monday."
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "confirmed"
    [run] = thread["agent_runs"]
    assert run["outcome"] == "replied"
    assert [c["action"] for c in run["corrections"]] == ["asked_again"]
    assert [c["name"] for c in run["tool_calls"]] == ["confirm_appointment"]


async def test_a_claim_a_tool_backs_goes_out_untouched(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    _, started = await service.kickoff(**KICKOFF)
    llm.script(tool_call("confirm_appointment"), reply("You're confirmed, see you Monday!"))

    await service.twilio_inbound("confirm please", sid="SM" + "e" * 32)
    await twilio.wait_for_messages(2)

    assert twilio.messages[1]["Body"] == "You're confirmed, see you Monday!"
    assert len(llm.requests) == 2
    thread = await service.conversation(started["conversation_id"])
    assert thread["agent_runs"][0]["corrections"] == []


@pytest.mark.parametrize(
    ("text", "known", "made_up"),
    [
        ("Thursday at 2pm works!", "Opening hours: Mon-Fri 9:00 AM-5:00 PM", True),
        ("We close at 5 PM on Fridays.", "Opening hours: Mon-Fri 9:00 AM-5:00 PM", False),
        ("We close at 17:00 on Fridays.", "Opening hours: Mon-Fri 9:00 AM-5:00 PM", False),
        ("I have 3:30 open on Tuesday.", "Open times: Tue, Dec 8 at 3:30 PM.", False),
        ("Your cleaning is Tue, Dec 8 at 10:00 AM.", "- when: Tue, Dec 8 at 10:00 AM", False),
        ("Would 2pm Thursday work for you?", "", False),
        ("2pm is not open, sorry.", "", False),
    ],
)
def test_a_time_of_day_must_come_from_the_instructions_or_a_tool(
    text: str, known: str, made_up: bool
) -> None:
    assert (Claim.TIME in unbacked(text, [], known=known)) is made_up
    # Without what the agent was told, times are not judged.
    assert Claim.TIME not in unbacked(text, [])


async def test_a_slot_the_model_invents_is_not_promised(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    """The failure a tiny model showed: "Thursday at 2pm works" with no tool behind it."""
    _, started = await service.kickoff(**KICKOFF)
    llm.script(
        reply("Sure, Thursday at 2pm works!"),
        reply("Thursday at 2pm works, see you then."),
    )

    await service.twilio_inbound("can we do thursday at 2 instead", sid="SM" + "f" * 32)
    await twilio.wait_for_messages(2)

    assert "2pm" not in twilio.messages[1]["Body"]
    assert "will get back to you" in twilio.messages[1]["Body"]
    thread = await service.conversation(started["conversation_id"])
    assert thread["appointment"]["status"] == "scheduled"
    [run] = thread["agent_runs"]
    assert run["outcome"] == "unbacked_claim"
    assert [c["claims"] for c in run["corrections"]] == [["names_a_time"], ["names_a_time"]]
    # The second request carried the facts back to the model.
    assert "names a time" in llm.requests[1]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("text", "made_up"),
    [
        ("Tuesday after 3 works.", True),
        ("We close at 5 on Fridays.", False),
        ("It takes about 30 minutes, see you at 10 AM.", False),
        ("Your visit lasts 1 hour.", False),
        ("We can see 2 people at once.", False),
    ],
)
def test_an_hour_without_am_or_pm_counts_too(text: str, made_up: bool) -> None:
    known = "Opening hours: Mon-Fri 9:00 AM-5:00 PM\n- when: Tue, Dec 8 at 10:00 AM"
    assert (Claim.TIME in unbacked(text, [], known=known)) is made_up


def test_the_prompts_own_examples_back_no_time() -> None:
    """ "e.g. Tue, Mar 10 at 3:00 PM" in the instructions is wording, not an open slot."""
    workspace = Workspace(
        id="ws", name="x", business_name="B", timezone="America/Denver", vertical="dental"
    )
    contact = Contact(id="ct", workspace_id="ws", phone="+13035550101")
    prompt, facts = rendered_prompt(
        workspace=workspace,
        contact=contact,
        appointment=None,
        context=None,
        now=datetime(2026, 12, 2, 19, 0, tzinfo=UTC),
    )
    assert "Mar 10 at 3:00 PM" in prompt
    assert "3:00 PM" not in facts
    assert "Mon-Fri 9:00 AM-5:00 PM" in facts
    assert Claim.TIME in unbacked("Tuesday at 3:00 PM is open.", [], known=facts)
