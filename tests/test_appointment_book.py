"""The agent books into the built-in appointment book: a free time moves the appointment (its
old time kept), a taken, closed, past or garbage time changes nothing and says why with open
times nearby; open times are looked up; an office with its own calendar is asked instead."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from agent.booking import format_when
from agent.evals.scripted import ScriptedLLM, last_system_prompt, reply, tool_call
from storage.engine import create_engine
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Service
from tests.test_kickoff import KICKOFF

DENVER = ZoneInfo("America/Denver")  # the test workspace's zone
HOURS = {"mon": "08:00-12:00, 13:00-17:00", "tue": "08:00-17:00", "wed": "08:00-17:00"}


def _monday() -> date:
    """A Monday in the coming week: the patient's appointment is at 15:00 that day."""
    ahead = datetime.now(DENVER).date() + timedelta(days=7)
    return ahead - timedelta(days=ahead.weekday())


MON = _monday()
TUE, WED, THU = (MON + timedelta(days=n) for n in (1, 2, 3))


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=DENVER)


def _local(day: date, hour: int, minute: int = 0) -> str:
    """What a model passes: a local time without an offset."""
    return _at(day, hour, minute).replace(tzinfo=None).isoformat(timespec="minutes")


async def _started(service: Service, **overrides: Any) -> str:
    body: dict[str, Any] = {
        **KICKOFF,
        "appointment": {
            **KICKOFF["appointment"],
            "start": _at(MON, 15).isoformat(),
            "end": _at(MON, 15, 30).isoformat(),
        },
    }
    status, started = await service.kickoff(**{**body, **overrides})
    assert status == 201, started
    return str(started["conversation_id"])


async def _another_patient(service: Service, start: datetime, end: datetime) -> None:
    """Someone else's appointment, taking that time."""
    await _started(
        service,
        to="(310) 555-7777",
        contact={"first_name": "Ana", "external_id": "PAT-2"},
        appointment={"external_id": "other", "start": start.isoformat(), "end": end.isoformat()},
    )


def _tool_results(llm: ScriptedLLM) -> list[str]:
    """What every tool answered this turn, in order (the last request carries them all)."""
    return [str(m["content"]) for m in llm.requests[-1]["messages"] if m["role"] == "tool"]


async def _ask(service: Service, twilio: TwilioStub, text: str, sid: str, replies: int) -> None:
    status, _, _ = await service.twilio_inbound(text, sid=sid)
    assert status == 200
    await twilio.wait_for_messages(replies)


async def test_a_free_time_moves_the_appointment_and_keeps_the_old_one(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(business_hours=HOURS)
    conversation_id = await _started(service)
    llm.script(
        tool_call("reschedule_appointment", new_start=_local(TUE, 9)),
        reply("Done, Tuesday at 9."),
    )

    await _ask(service, twilio, "can we do Tuesday at 9 instead?", "SM" + "1" * 32, 2)

    thread = await service.conversation(conversation_id)
    appointment = thread["appointment"]
    assert appointment["status"] == "rescheduled", _tool_results(llm)
    assert datetime.fromisoformat(appointment["start"]) == _at(TUE, 9)
    assert datetime.fromisoformat(appointment["end"]) == _at(TUE, 9, 30)
    [previous] = appointment["history"]
    assert datetime.fromisoformat(previous["starts_at"]) == _at(MON, 15)
    moved = [e for e in thread["events"] if e["type"] == "appointment.rescheduled"]
    assert len(moved) == 1
    when = format_when(_at(TUE, 9), "America/Denver")
    assert f"Tell the customer their appointment is now {when}" in _tool_results(llm)[0]


async def test_taken_closed_past_and_garbage_times_change_nothing_and_offer_open_times(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(
        business_hours=HOURS, closed_days=[WED.isoformat()], llm_max_steps=10
    )
    # Another patient already has Tuesday 10:00-11:00.
    await _another_patient(service, _at(TUE, 10), _at(TUE, 11))
    conversation_id = await _started(service)
    llm.script(
        tool_call("reschedule_appointment", new_start=_local(TUE, 10, 15)),  # taken
        tool_call("reschedule_appointment", new_start=_local(WED, 10)),  # closed date
        tool_call("reschedule_appointment", new_start=_local(THU, 10)),  # Thursday: closed
        tool_call("reschedule_appointment", new_start=_local(MON, 12, 15)),  # lunch
        tool_call("reschedule_appointment", new_start="2020-01-07T10:00"),  # past
        tool_call("reschedule_appointment", new_start="Tuesday-ish"),  # garbage
        reply("Which of those open times works?"),
    )

    await _ask(service, twilio, "move it please", "SM" + "2" * 32, 3)

    results = _tool_results(llm)
    prompt = last_system_prompt(llm.requests[0])
    assert "Mon 8:00 AM-12:00 PM, 1:00 PM-5:00 PM; Tue-Wed 8:00 AM-5:00 PM" in prompt
    assert f"also closed {WED:%a, %b} {WED.day}" in prompt
    assert "check_availability to find open times" in prompt
    assert len(results) == 6
    assert "already taken" in results[0]
    assert "Open times nearby" in results[0]
    assert format_when(_at(TUE, 10), "America/Denver") not in results[0]
    # The nearest open times that day come first: 11:00 right after the taken hour.
    assert f"Open times nearby: {format_when(_at(TUE, 11), 'America/Denver')}" in results[0]
    assert f"closed on {WED:%A, %B} {WED.day}" in results[1]
    assert f"closed on {THU:%A, %B} {THU.day}" in results[2]
    assert "outside opening hours" in results[3]
    assert "in the past" in results[4]
    assert "not an ISO-8601" in results[5]
    assert all("Nothing was changed" in r for r in results[:4])
    thread = await service.conversation(conversation_id)
    assert thread["appointment"]["status"] == "scheduled"
    assert thread["appointment"]["history"] == []
    assert datetime.fromisoformat(thread["appointment"]["start"]) == _at(MON, 15)
    assert [e["type"] for e in thread["events"]] == ["conversation.started"]


async def test_open_times_leave_out_taken_and_closed_times(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(business_hours={"tue": "08:00-10:00"})
    await _another_patient(service, _at(TUE, 8), _at(TUE, 9))
    await _started(service)
    llm.script(
        tool_call("check_availability", day=TUE.isoformat()),
        tool_call("check_availability", day=MON.isoformat(), until=TUE.isoformat(), after="09:15"),
        tool_call("check_availability", day=MON.isoformat()),
        tool_call("check_availability", day="next week", after="3pm"),
        reply("I have Tuesday at 9."),
    )

    await _ask(service, twilio, "what do you have on Tuesday?", "SM" + "3" * 32, 3)

    results = _tool_results(llm)

    def said(hour: int, minute: int) -> str:
        return format_when(_at(TUE, hour, minute), "America/Denver")

    assert results[0].startswith(f"Open times: {said(9, 0)}; {said(9, 15)}")
    assert " 8:" not in results[0]
    assert results[1].startswith(f"Open times: {said(9, 15)}; {said(9, 30)}")
    assert "No open times" in results[2]
    assert "Tue 8:00 AM-10:00 AM" in results[2]
    assert "ISO dates" in results[3]


async def test_an_office_with_its_own_calendar_is_asked_to_move_it(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(scheduling="external")
    conversation_id = await _started(service)
    llm.script(
        tool_call("check_availability", day=TUE.isoformat()),
        tool_call("reschedule_appointment", new_start=_local(TUE, 9)),
        reply("I've asked the office; they will confirm."),
    )

    await _ask(service, twilio, "can we do Tuesday at 9?", "SM" + "4" * 32, 2)

    results = _tool_results(llm)
    prompt = last_system_prompt(llm.requests[0])
    assert "Opening hours: Mon-Fri 9:00 AM-5:00 PM; closed Sat-Sun (America/Denver)" in prompt
    assert "the office will confirm it" in prompt
    assert "keeps its own calendar" in results[0]
    assert "the office will confirm" in results[1]
    thread = await service.conversation(conversation_id)
    assert thread["appointment"]["status"] == "reschedule_requested"
    assert datetime.fromisoformat(thread["appointment"]["requested_start"]) == _at(TUE, 9)


async def test_a_customer_without_an_appointment_books_a_free_time(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(business_hours=HOURS)
    llm.script(
        tool_call("book_appointment", start=_local(TUE, 12, 0), kind="cleaning"),  # free
        tool_call("book_appointment", start=_local(TUE, 13, 0)),  # a second one
        reply("You're booked for Tuesday at noon."),
    )

    status, _, _ = await service.twilio_inbound(
        "I need a cleaning Tuesday at noon", sid="SM" + "5" * 32
    )
    assert status == 200
    await twilio.wait_for_messages(1)

    results = _tool_results(llm)
    assert results[0].startswith("Booked.")
    # The second is refused: the thread has the one just booked, though the turn began without.
    assert "already has an appointment" in results[1]
    status, listing, _ = await service.request("GET", "/v1/conversations")
    assert status == 200
    thread = await service.conversation(listing["data"][0]["id"])
    appointment = thread["appointment"]
    assert appointment["status"] == "scheduled"
    assert appointment["type"] == "cleaning"
    assert datetime.fromisoformat(appointment["start"]) == _at(TUE, 12)
    assert twilio.messages[0]["Body"] == "You're booked for Tuesday at noon."
    assert "appointment.booked" in [e["type"] for e in thread["events"]]


async def test_booking_refuses_a_customer_who_already_has_an_appointment(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(business_hours=HOURS)
    conversation_id = await _started(service)  # Monday 15:00 on file
    llm.script(
        tool_call("book_appointment", start=_local(TUE, 9)),
        reply("You already have Monday at 3; want to move it instead?"),
    )

    await _ask(service, twilio, "book me Tuesday at 9", "SM" + "6" * 32, 2)

    assert "already has an appointment" in _tool_results(llm)[0]
    thread = await service.conversation(conversation_id)
    assert datetime.fromisoformat(thread["appointment"]["start"]) == _at(MON, 15)
    assert [e["type"] for e in thread["events"]] == ["conversation.started"]


async def test_a_customer_with_two_appointments_acts_on_either_but_never_on_anothers(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(business_hours=HOURS)
    await _another_patient(service, _at(TUE, 10), _at(TUE, 11))
    await _started(service)  # her cleaning, Monday 15:00
    ids = await _appointment_ids(service)
    sarahs = [i for i, first in ids if first == "Sarah"]
    anas = [i for i, first in ids if first == "Ana"]
    # Sarah's second visit, booked by the office in its own system.
    status, _ = await service.kickoff(
        **{
            **KICKOFF,
            "message": "Your filling is booked too.",
            "appointment": {
                "external_id": "filling",
                "start": _at(WED, 9).isoformat(),
                "end": _at(WED, 10).isoformat(),
                "type": "filling",
            },
        }
    )
    assert status == 201
    filling = next(i for i, _ in await _appointment_ids(service) if i not in sarahs + anas)
    # Her texts go to the newest thread, the filling's; the cleaning is her other appointment.
    other = sarahs[0]
    llm.script(
        tool_call("confirm_appointment", appointment_id=anas[0]),
        tool_call("cancel_appointment", reason="asked", appointment_id="apt_nope"),
        tool_call("cancel_appointment", reason="can't make it", appointment_id=other),
        reply("Done: that one is cancelled."),
    )

    await _ask(service, twilio, "cancel the other one please", "SM" + "7" * 32, 4)

    prompt = last_system_prompt(llm.requests[0])
    assert f"- {other}: cleaning" in prompt
    assert f"This conversation is about {filling}" in prompt
    assert anas[0] not in prompt
    results = _tool_results(llm)
    assert (
        results[0]
        == results[1]
        == ("That is not one of this customer's appointments. Nothing changed.")
    )
    assert results[2].startswith("Canceled.")
    statuses = dict(await _appointment_statuses(service))
    assert statuses[anas[0]] == "scheduled"
    assert statuses[other] == "canceled"
    assert statuses[filling] == "scheduled"


async def _appointment_ids(service: Service) -> list[tuple[str, str]]:
    rows = await _query(
        service,
        "SELECT a.id, c.first_name FROM appointments a JOIN contacts c ON c.id = a.contact_id",
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def _appointment_statuses(service: Service) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1])) for r in await _query(service, "SELECT id, status FROM appointments")
    ]


async def _query(service: Service, sql: str) -> list[Any]:
    engine = create_engine(service.settings.database_url, schema=service.settings.database_schema)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def test_the_prompt_remembers_what_came_of_earlier_conversations(
    service: Service, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    await _started(service)
    await _ask(service, twilio, "Y", "SM" + "a1" * 16, 2)  # confirmed on the fast path
    status, _ = await service.kickoff(
        **{
            **KICKOFF,
            "message": "Time for your filling: reply Y to confirm.",
            "appointment": {"external_id": "filling", "start": _at(WED, 9).isoformat()},
        }
    )
    assert status == 201
    llm.script(reply("Happy to help!"))

    await _ask(service, twilio, "quick question about parking", "SM" + "a2" * 16, 4)

    prompt = last_system_prompt(llm.requests[0])
    today = datetime.now(DENVER)
    assert (
        "Earlier conversations with them (what came of each):\n"
        f"- {today:%a, %b} {today.day}: confirmed the appointment\n"
    ) in prompt
    assert "parking" not in prompt  # texts are never in the instructions


async def test_each_kind_of_visit_takes_as_long_as_the_office_says(
    make_service: ServiceFactory, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    service = await make_service(
        business_hours=HOURS, appointment_types={"cleaning": 90, "checkup": 30}
    )
    llm.script(
        tool_call("check_availability", day=TUE.isoformat(), after="15:00", kind="cleaning"),
        tool_call("book_appointment", start=_local(TUE, 16, 0), kind="teeth cleaning"),
        tool_call("book_appointment", start=_local(TUE, 15, 30), kind="teeth cleaning"),
        reply("You're booked for a cleaning Tuesday at 3:30 PM."),
    )

    await service.twilio_inbound("I need a cleaning Tuesday after 3", sid="SM" + "9" * 32)
    await twilio.wait_for_messages(1)

    offered, too_late, booked = _tool_results(llm)
    # 90 minutes from 15:00 and 15:30 end by closing at 17:00; 16:00 would not.
    assert "3:00 PM" in offered
    assert "3:30 PM" in offered
    assert "4:00 PM" not in offered
    assert "Nothing was booked" in too_late
    assert booked.startswith("Booked.")
    assert "Kinds of visit: checkup (30 min), cleaning (90 min)" in last_system_prompt(
        llm.requests[0]
    )
    _, listing, _ = await service.request("GET", "/v1/conversations")
    appointment = (await service.conversation(listing["data"][0]["id"]))["appointment"]
    assert datetime.fromisoformat(appointment["start"]) == _at(TUE, 15, 30)
    assert datetime.fromisoformat(appointment["end"]) == _at(TUE, 17, 0)
