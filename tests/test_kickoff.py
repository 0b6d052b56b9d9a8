"""POST /v1/conversations: a business starts a thread; the text reaches Twilio."""

from __future__ import annotations

from typing import Any

from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, PUBLIC_URL, Database, Service, count_rows

KICKOFF: dict[str, Any] = {
    "to": "(310) 555-1234",
    "message": "Hi Sarah, this is Bright Smiles Dental. Reply Y to confirm your cleaning.",
    "contact": {
        "first_name": "Sarah",
        "last_name": "Johnson",
        "external_id": "PAT-10432",
        "date_of_birth": "1988-03-22T00:00:00.000Z",
    },
    "appointment": {
        "external_id": "81260683",
        "start": "2031-03-10T15:00:00-06:00",
        "end": "2031-03-10T15:30:00-06:00",
        "type": "cleaning",
        "description": "6-month routine cleaning and exam",
    },
    "context": "Confirming upcoming cleaning appointment.",
}


async def test_kickoff_reaches_twilio_in_e164(service: Service, twilio: TwilioStub) -> None:
    status, body = await service.kickoff(**KICKOFF)

    assert status == 201, body
    assert body["conversation_id"].startswith("conv_")
    assert body["message_id"].startswith("msg_")
    assert body["segments"] == 1
    await twilio.wait_for_messages(1)
    sent = twilio.messages[0]
    assert sent["To"] == PATIENT
    assert sent["From"] == FROM_NUMBER
    assert sent["Body"] == KICKOFF["message"]
    assert sent["StatusCallback"] == (
        f"{PUBLIC_URL}/webhooks/twilio/status?message_id={body['message_id']}"
    )

    thread = await service.conversation(body["conversation_id"])
    assert thread["contact"]["first_name"] == "Sarah"
    assert thread["contact"]["phone"] == PATIENT
    assert thread["appointment"]["status"] == "scheduled"
    assert thread["appointment"]["start"] == "2031-03-10T21:00:00Z"
    assert thread["context"] == KICKOFF["context"]
    [message] = thread["messages"]
    assert message["direction"] == "outbound"
    assert message["status"] in ("sending", "sent")


async def test_kickoff_needs_the_api_key(service: Service, db: Database) -> None:
    status, body, headers = await service.request(
        "POST", "/v1/conversations", json=KICKOFF, auth=False
    )
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")

    status, body, _ = await service.request(
        "POST",
        "/v1/conversations",
        json=KICKOFF,
        auth=False,
        headers={"Authorization": "Bearer not-the-key-at-all"},
    )
    assert status == 401
    assert await count_rows(db, "conversations") == 0


async def test_kickoff_names_each_bad_field(service: Service, db: Database) -> None:
    bad = {
        **KICKOFF,
        "to": "not a phone",
        "contact": {"first_name": "Sarah", "email": "nope"},
        "appointment": {"start": "next tuesday"},
        "surprise": 1,
    }
    status, body, _ = await service.request("POST", "/v1/conversations", json=bad)

    assert status == 422
    assert body["error"]["code"] == "validation_error"
    fields = {d["field"] for d in body["error"]["details"]}
    assert fields == {"to", "contact.email", "appointment.start", "surprise"}
    assert await count_rows(db, "contacts") == 0


async def test_kickoff_rejects_broken_json(service: Service) -> None:
    status, body, _ = await service.request(
        "POST",
        "/v1/conversations",
        data=b'{"to": ',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


async def test_kickoff_from_an_unknown_number_is_refused(service: Service) -> None:
    status, body = await service.kickoff(**{**KICKOFF, "from": "+15559990000"})
    assert status == 422
    assert body["error"]["details"][0]["field"] == "from"


async def test_unknown_conversation_is_404(service: Service) -> None:
    status, body, _ = await service.request("GET", "/v1/conversations/conv_missing")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_unknown_route_is_a_json_404(service: Service) -> None:
    status, body, _ = await service.request("GET", "/v2/nothing")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_a_new_kickoff_closes_the_previous_thread(service: Service) -> None:
    _, first = await service.kickoff(**KICKOFF)
    _, second = await service.kickoff(**KICKOFF)

    assert first["conversation_id"] != second["conversation_id"]
    assert (await service.conversation(first["conversation_id"]))["status"] == "closed"
    assert (await service.conversation(second["conversation_id"]))["status"] == "open"
