"""The Avoca, HelloAnnie and Avaamo send APIs, with each document's request examples exactly
as printed (auth adapted, Avaamo's placeholder number filled in): the documented answers, and a
reply from the customer that reaches the agent with the right contact, appointment and context."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.evals.scripted import ScriptedLLM, last_system_prompt, reply
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, count_rows, wait_until
from tests.workspaces import call, new_workspace, text_in

ANNIE_NUMBER = "+15551234567"  # the document's fromNumber, configured as the workspace's sender

# Avoca: https://api.avoca.ai/v1/outbound/sms/send (seed 000), body as printed.
AVOCA_EXAMPLE = """{
    "to": "+13105551234",
    "message": "Hi John! This is ABC Plumbing confirming your appointment tomorrow at 2-4 PM. Reply Y to confirm or call 555-0123 to reschedule.",
    "customer_id": "cust_789",
    "message_type": "transactional",
    "options": {
      "shorten_urls": true
    }
  }"""  # noqa: E501

# HelloAnnie: https://api.helloannie.com/v1/sms (seed 002), body as printed.
ANNIE_EXAMPLE = """
{
  "fromNumber": "+15551234567",
  "toNumber": "+15559876543",
  "message": "Hi Sarah, this is Annie from Bright Smiles Dental. We wanted to reach out about scheduling your next cleaning appointment.",
  "patientInfo": {
    "firstName": "Sarah",
    "lastName": "Johnson",
    "dateOfBirth": "1988-03-22T00:00:00.000Z",
    "patientId": "PAT-10432"
  },
  "appointmentInfo": {
    "startTime": "2025-03-10T15:00:00-06:00",
    "endTime": "2025-03-10T15:30:00-06:00",
    "appointmentTypeId": "apt-type-cleaning",
    "appointmentDescription": "6-month routine cleaning and exam",
    "appointmentId": "81260683"
  },
  "context": "Confirming upcoming cleaning appointment scheduled for March 10th at 3:00 PM"
}
"""  # noqa: E501

# Avaamo: https://cx.avaamo.com/sms/{channel_uuid}/send.json (seed 001), with the placeholder
# "+1 (xxx) xxx-xxxx" filled in.
AVAAMO_EXAMPLE = """{
    "first_name": "John",
    "last_name": "Jacob",
    "emp_id": "1234",
    "to_phone": "+1 (310) 555-1234"
  }"""


async def _post_raw(
    service: Service, path: str, raw: str, headers: dict[str, str]
) -> tuple[int, Any]:
    """POST the document's body byte for byte."""
    status, body, _ = await service.request(
        "POST",
        path,
        data=raw.encode(),
        auth=False,
        headers={"Content-Type": "application/json", **headers},
    )
    return status, body


async def test_avoca_send_as_documented(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    ws = await new_workspace(db, "ABC Plumbing", "+15550002222", vertical="home_services")
    status, body = await _post_raw(
        service,
        "/compat/avoca/v1/outbound/sms/send",
        AVOCA_EXAMPLE,
        {"Authorization": f"Bearer {ws.api_key}", "X-Workspace-ID": ws.id},
    )

    assert status == 200, body
    assert set(body) == {"data", "meta"}
    data = body["data"]
    assert set(data) == {
        "message_id",
        "status",
        "conversation_id",
        "segments",
        "scheduled_time",
        "cost",
    }
    assert data["status"] == "sent"
    assert data["segments"] == 1
    assert data["scheduled_time"] is None
    assert isinstance(data["cost"], float)
    assert data["cost"] > 0
    assert set(body["meta"]) == {"request_id", "timestamp"}
    assert body["meta"]["request_id"].startswith("req_")
    datetime.fromisoformat(body["meta"]["timestamp"].replace("Z", "+00:00"))

    await twilio.wait_for_messages(1)
    sent = twilio.messages[0]
    assert (sent["From"], sent["To"]) == ("+15550002222", "+13105551234")
    assert sent["Body"] == json.loads(AVOCA_EXAMPLE)["message"]
    thread = await call(service, "GET", f"/v1/conversations/{data['conversation_id']}", ws.api_key)
    assert thread[1]["contact"]["external_id"] == "cust_789"

    # The customer answers: the agent gets the thread, with the business's text before it.
    llm.script(reply("Sure, what time works better for you?"))
    await text_in(
        service, sid="SMavoca1", sender="+13105551234", to="+15550002222", body="Can you come at 1?"
    )
    await llm.wait_for_requests(1)
    said = [m.get("content") for m in llm.requests[0]["messages"]]
    assert json.loads(AVOCA_EXAMPLE)["message"] in said
    assert "Can you come at 1?" in said
    assert "ABC Plumbing" in last_system_prompt(llm.requests[0])
    await twilio.wait_for_messages(2)
    assert twilio.messages[1]["From"] == "+15550002222"
    _, after = await call(
        service, "GET", f"/v1/conversations/{data['conversation_id']}", ws.api_key
    )
    assert [m["direction"] for m in after["messages"]] == ["outbound", "inbound", "outbound"]


async def test_avoca_templates_scheduling_and_links(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "ABC Plumbing", "+15550002222", vertical="home_services")
    headers = {"X-Workspace-ID": ws.id}
    send_path = "/compat/avoca/v1/outbound/sms/send"
    status, body = await call(
        service,
        "POST",
        send_path,
        ws.api_key,
        headers=headers,
        json={
            "to": "(310) 555-1234",
            "message_type": "transactional",
            "templates": {
                "id": "tmpl_otw",
                "variables": {
                    "technician_name": "Mike",
                    "eta": 20,
                    "tracking_link": "https://track.example.com/t/abc?x=1",
                },
            },
            "options": {"shorten_urls": True},
        },
    )
    assert status == 200, body
    await twilio.wait_for_messages(1)
    text = twilio.messages[0]["Body"]
    assert text.startswith("Mike is heading your way! ETA: 20 minutes. Track: ")
    short = text.rsplit(" ", 1)[1]
    assert short.startswith(f"{service.settings.public_url}/l/")
    assert await count_rows(db, "short_links") == 1

    # A variable left out is named.
    status, body = await call(
        service,
        "POST",
        send_path,
        ws.api_key,
        headers=headers,
        json={
            "to": "+13105551234",
            "message_type": "transactional",
            "templates": {"id": "tmpl_appt_confirm", "variables": {"first_name": "John"}},
        },
    )
    assert status == 422, body
    assert "service_type" in body["error"]["message"]
    assert {d["field"] for d in body["error"]["details"]} == {
        "templates.variables.service_type",
        "templates.variables.date",
        "templates.variables.time",
    }

    # Scheduled for later: answered `scheduled` with the time, nothing sent yet.
    later = "2031-01-20T10:15:00-08:00"
    status, body = await call(
        service,
        "POST",
        send_path,
        ws.api_key,
        headers=headers,
        json={
            "to": "+13105551234",
            "message": "Reminder: your water heater service is tomorrow.",
            "message_type": "alert",
            "scheduling": {"send_at": later},
        },
    )
    assert status == 200, body
    assert body["data"]["status"] == "scheduled"
    assert body["data"]["scheduled_time"] == "2031-01-20T18:15:00Z"
    assert len(twilio.messages) == 1

    # Continuing a thread by its id; an unknown one is 404.
    status, body = await call(
        service,
        "POST",
        send_path,
        ws.api_key,
        headers=headers,
        json={
            "to": "+13105551234",
            "message": "One more thing",
            "message_type": "conversational",
            "conversation_id": "conv_nope",
        },
    )
    assert status == 404, body


async def test_avoca_checks_its_headers_and_body(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "ABC Plumbing", "+15550002222")
    other = await new_workspace(db, "Other", "+15550003333")
    path = "/compat/avoca/v1/outbound/sms/send"
    good = json.loads(AVOCA_EXAMPLE)
    status, body = await call(service, "POST", path, ws.api_key, json=good)
    assert status == 401
    assert body["error"]["code"] == "workspace_mismatch"
    status, body = await call(
        service, "POST", path, ws.api_key, json=good, headers={"X-Workspace-ID": other.id}
    )
    assert status == 401
    status, body = await call(
        service,
        "POST",
        path,
        ws.api_key,
        json={**good, "message_type": "newsletter", "message": "x" * 1601},
        headers={"X-Workspace-ID": ws.id},
    )
    assert status == 422
    assert {d["field"] for d in body["error"]["details"]} == {"message_type", "message"}
    assert await count_rows(db, "messages") == 0


async def test_helloannie_start_as_documented(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    ws = await new_workspace(db, "Bright Smiles Dental", ANNIE_NUMBER)
    status, body = await _post_raw(
        service,
        "/compat/helloannie/v1/sms",
        ANNIE_EXAMPLE,
        {"Authorization": f"Bearer {ws.api_key}"},
    )

    assert status == 200, body
    assert body["success"] is True
    assert set(body["data"]) == {"conversationId"}
    conversation_id = body["data"]["conversationId"]
    await twilio.wait_for_messages(1)
    assert (twilio.messages[0]["From"], twilio.messages[0]["To"]) == (ANNIE_NUMBER, "+15559876543")

    _, thread = await call(service, "GET", f"/v1/conversations/{conversation_id}", ws.api_key)
    assert thread["contact"]["first_name"] == "Sarah"
    assert thread["contact"]["external_id"] == "PAT-10432"
    assert thread["appointment"]["external_id"] == "81260683"
    assert thread["appointment"]["start"] == "2025-03-10T21:00:00Z"
    assert thread["appointment"]["type"] == "apt-type-cleaning"
    assert thread["context"].startswith("Confirming upcoming cleaning appointment")

    # A question goes to the agent, which knows the patient, the visit and the context.
    llm.script(reply("We're open 8 to 5 on weekdays."))
    await text_in(
        service, sid="SMannie1", sender="+15559876543", to=ANNIE_NUMBER, body="When are you open?"
    )
    await llm.wait_for_requests(1)
    prompt = last_system_prompt(llm.requests[0])
    assert "Sarah" in prompt
    assert "6-month routine cleaning and exam" in prompt
    assert "scheduled for March 10th at 3:00 PM" in prompt
    assert "Bright Smiles Dental" in prompt

    # The document's visit has passed; for the next one, "Y" confirms it without the model.
    upcoming = json.loads(ANNIE_EXAMPLE)
    upcoming["appointmentInfo"].update(
        startTime="2031-03-10T15:00:00-06:00",
        endTime="2031-03-10T15:30:00-06:00",
        appointmentId="81260999",
    )
    status, body = await call(
        service, "POST", "/compat/helloannie/v1/sms", ws.api_key, json=upcoming
    )
    assert status == 200, body
    upcoming_id = body["data"]["conversationId"]
    assert upcoming_id != conversation_id
    await text_in(service, sid="SMannie2", sender="+15559876543", to=ANNIE_NUMBER, body="Y")

    async def confirmed() -> bool:
        _, now = await call(service, "GET", f"/v1/conversations/{upcoming_id}", ws.api_key)
        return bool(now["appointment"]["status"] == "confirmed")

    await wait_until(confirmed, what="the appointment confirmed")
    _, now = await call(service, "GET", f"/v1/conversations/{upcoming_id}", ws.api_key)
    assert now["appointment"]["external_id"] == "81260999"
    assert len(llm.requests) == 1


async def test_helloannie_refuses_a_number_not_its_own(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Bright Smiles Dental", ANNIE_NUMBER)
    body = {**json.loads(ANNIE_EXAMPLE), "fromNumber": "+15550009999"}
    status, answer = await call(service, "POST", "/compat/helloannie/v1/sms", ws.api_key, json=body)
    assert status == 422
    assert answer["error"]["details"] == [
        {"field": "fromNumber", "message": "not one of this workspace's sender numbers"}
    ]
    status, answer = await call(
        service,
        "POST",
        "/compat/helloannie/v1/sms",
        ws.api_key,
        json={**json.loads(ANNIE_EXAMPLE), "message": "", "context": "c" * 501},
    )
    assert status == 422
    assert {d["field"] for d in answer["error"]["details"]} == {"message", "context"}
    assert await count_rows(db, "conversations") == 0


async def test_avaamo_send_as_documented(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    ws = await new_workspace(db, "Bright Smiles Dental", "+15550002222")
    status, body = await _post_raw(
        service, f"/compat/avaamo/sms/{ws.avaamo_channel_uuid}/send.json", AVAAMO_EXAMPLE, {}
    )

    assert status == 200, body
    assert body == {"success": True}
    await twilio.wait_for_messages(1)
    greeting = twilio.messages[0]
    assert greeting["To"] == "+13105551234"
    assert greeting["Body"].startswith("Hi John! This is Bright Smiles Dental.")

    # The custom parameters are in what the agent sees on every turn.
    llm.script(reply("Happy to help, John."), reply("Anything else?"))
    for n, words in enumerate(("Hi, I need to move my visit", "Next week please")):
        await text_in(
            service, sid=f"SMavaamo{n}", sender="+13105551234", to="+15550002222", body=words
        )
        await llm.wait_for_requests(n + 1)
        prompt = last_system_prompt(llm.requests[n])
        assert "emp_id: 1234" in prompt
        assert "John" in prompt


async def test_avaamo_needs_a_known_channel(service: Service, db: Database) -> None:
    status, body = await _post_raw(
        service,
        "/compat/avaamo/sms/3ad87fb7-c43e-4f00-8441-000000000000/send.json",
        AVAAMO_EXAMPLE,
        {},
    )
    assert status == 404
    assert body["error"]["code"] == "not_found"
    ws = await new_workspace(db, "Bright Smiles Dental", "+15550002222")
    status, body = await _post_raw(
        service,
        f"/compat/avaamo/sms/{ws.avaamo_channel_uuid}/send.json",
        '{"first_name": "John", "to_phone": "+1 (xxx) xxx-xxxx"}',
        {},
    )
    assert status == 422
    assert body["error"]["details"][0]["field"] == "to_phone"
    assert await count_rows(db, "messages") == 0
