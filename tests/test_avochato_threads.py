"""The inbox API's tickets, events and messages: the seed's examples answered in its shapes, a
member's text handing the thread to people, the round-robin roster, the agent's events in the
stream, scheduled messages canceled, status callbacks, and another inbox's ids out of reach."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text

from agent.evals.scripted import ScriptedLLM, reply, tool_call
from agent.workspaces import Credentials
from storage.engine import create_engine, create_session_factory
from storage.models import Membership, User
from storage.types import new_id
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, wait_until
from tests.inbox import inbox
from tests.workspaces import call, new_workspace, text_in

NUMBER = "+14155551234"  # the inbox's number, as the seed's received message is addressed
CUSTOMER = "+14155553333"
SMS_MESSAGE = {
    "uuid",
    "account_id",
    "ticket_id",
    "contact_id",
    "sender_id",
    "sender_type",
    "broadcast_id",
    "salesforce_activity_id",
    "salesforce_group_activity_id",
    "to",
    "from",
    "direction",
    "origin",
    "message",
    "contents",
    "segments",
    "carrier",
    "external_id",
    "status",
    "error_code",
    "error_description",
    "reason",
    "status_callback",
    "created_at",
    "sent_at",
    "content_blocked",
    "boost_multiplier",
    "event_id",
    "element_id",
    "element_type",
}
PENDING_MESSAGE = {
    "account_id",
    "ticket_id",
    "contact_id",
    "sender",
    "message",
    "media_url",
    "aborted",
    "sent",
    "scheduled_for",
    "created_at",
    "cancel_on",
    "aborter_id",
    "aborted_by",
    "abort_reason",
    "status_callback",
    "event_id",
    "element_id",
    "element_type",
    "sent_at",
}
TICKET = {
    "id",
    "uuid",
    "contact",
    "user_id",
    "unaddressed",
    "status",
    "origin",
    "created_at",
    "device_type",
    "device",
    "helper_bot",
    "helper_bot_source_account",
    "os",
    "os_version",
    "browser",
    "browser_version",
    "ip",
    "widget_referrer_url",
    "active_survey_id",
    "summary",
    "summary_updated_at",
}
EARLIER_TICKET = {
    "id",
    "uuid",
    "channel",
    "contact",
    "created_at",
    "closed_at",
    "user",
    "device_type",
    "option_data",
    "tags",
    "account_subdomain",
}
CUSTOM_EVENT = {
    "user_id",
    "account_id",
    "ticket_id",
    "contact_id",
    "qa_keyword_id",
    "type",
    "context",
    "revenue",
    "event_id",
    "element_id",
    "element_type",
    "sent_at",
}
STATUS_CHANGE = {
    "account_id",
    "ticket_id",
    "user_id",
    "status",
    "event_id",
    "element_id",
    "element_type",
    "sent_at",
}
OWNER_CHANGE = STATUS_CHANGE - {"status"} | {"owner_id", "old_owner_id"}
ELEMENTS = {
    "SmsMessage": SMS_MESSAGE,
    "PendingMessage": PENDING_MESSAGE,
    "CustomEvent": CUSTOM_EVENT,
    "StatusChange": STATUS_CHANGE,
    "OwnerChange": OWNER_CHANGE,
}


class Callbacks:
    """Where a sender asked for status callbacks: answers 500 to the first, 200 after."""

    def __init__(self) -> None:
        self.url = ""
        self.answered: list[tuple[int, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        status = 500 if not self.answered else 200
        self.answered.append((status, await request.json()))
        return web.json_response({}, status=status)

    def taken(self) -> list[dict[str, Any]]:
        return [body for status, body in self.answered if status == 200]


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    endpoint = Callbacks()
    app = web.Application()
    app.router.add_post("/status", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/status"
    yield endpoint
    await runner.cleanup()


@pytest.fixture
async def service(make_service: ServiceFactory) -> Service:
    # Many requests on one pair of credentials, and retries that need not wait.
    return await make_service(
        api_rate_per_second=10_000, api_rate_burst=10_000, webhook_retry_seconds=0.05
    )


async def _sql(db: Database, statement: str, **values: Any) -> list[Any]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), values)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


async def _member(db: Database, ws: Credentials, email: str, name: str) -> str:
    """A second member of the inbox's team, as the users API adds one; their id."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            user = User(id=new_id("usr"), email=email, name=name, home_workspace_id=ws.id)
            session.add(user)
            await session.flush()
            session.add(Membership(workspace_id=ws.id, user_id=user.id))
        return user.id
    finally:
        await engine.dispose()


async def _owner(db: Database, ws: Credentials) -> tuple[str, str]:
    [(user_id, name)] = await _sql(
        db, "SELECT id, name FROM users WHERE auth_id = :a", a=ws.avochato_auth_id
    )
    return str(user_id), str(name)


async def _ticket(service: Service, ws: Credentials, to: str, message: str = "Hi!") -> str:
    """A conversation started through the native API; its id (the ticket's)."""
    status, started = await call(
        service, "POST", "/v1/conversations", ws.api_key, json={"to": to, "message": message}
    )
    assert status == 201, started
    return str(started["conversation_id"])


async def _ok(service: Service, ws: Credentials, method: str, path: str, **values: Any) -> Any:
    status, body = await inbox(service, ws, method, path, **values)
    assert status == 200, body
    assert body["status"] == 200
    return body


async def _tickets(service: Service, ws: Credentials, ids: str) -> list[dict[str, Any]]:
    body = await _ok(service, ws, "GET", f"/v1/tickets/{ids}", page=1)
    return list(body["data"]["tickets"])


async def _handled(db: Database, count: int) -> None:
    async def done() -> bool:
        rows = await _sql(
            db,
            "SELECT count(*) FROM messages WHERE direction = 'inbound' AND handled_at IS NOT NULL",
        )
        return int(rows[0][0]) >= count

    await wait_until(done, what=f"{count} inbound text(s) handled")


async def test_a_member_s_text_reaches_the_customer_and_hands_the_thread_to_people(
    service: Service,
    db: Database,
    twilio: TwilioStub,
    llm: ScriptedLLM,
    callbacks: Callbacks,
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    member = await _member(db, ws, "test-2@test.com", "Test Two")

    # The seed's "Send Message", with a callback URL that answers.
    body = await _ok(
        service,
        ws,
        "POST",
        "/v1/messages",
        phone=CUSTOMER,
        message="test message",
        **{"from": NUMBER},
        mark_addressed="true",
        tags="Some Tag, Another Tag",
        status_callback=callbacks.url,
        send_as_user_email="test-2@test.com",
    )

    sent = body["data"]["message"]
    assert set(sent) == SMS_MESSAGE
    assert set(body) == {"status", "data"}
    assert (sent["sender_id"], sent["sender_type"]) == (member, "User")
    assert (sent["to"], sent["from"], sent["direction"]) == (CUSTOMER, NUMBER, "out")
    assert (sent["origin"], sent["message"]) == ("api", "test message")
    assert sent["status_callback"] == callbacks.url
    assert sent["element_type"] == "SmsMessage"
    await twilio.wait_for_messages(1)
    assert (twilio.messages[0]["To"], twilio.messages[0]["Body"]) == (CUSTOMER, "test message")
    thread = await call(service, "GET", f"/v1/conversations/{sent['ticket_id']}", ws.api_key)
    assert thread[0] == 200, thread
    assert thread[1]["mode"] == "human"
    assert set(thread[1]["contact"]["tags"]) >= {"Some Tag", "Another Tag"}

    # The callback hears of the send, once the URL takes it (its first answer was a 500).
    async def sent_reported() -> bool:
        return any(b["status"] == "sent" for b in callbacks.taken())

    await wait_until(sent_reported, what="the sent callback")
    report = next(b for b in callbacks.taken() if b["status"] == "sent")
    assert set(report) == SMS_MESSAGE
    assert report["event_id"] == sent["event_id"]
    assert callbacks.answered[0][0] == 500
    assert report["external_id"] == twilio.messages[0]["sid"]
    status, _, _ = await service.twilio_post(
        f"/webhooks/twilio/status?message_id={sent['event_id']}",
        {"MessageSid": twilio.messages[0]["sid"], "MessageStatus": "delivered"},
    )
    assert status == 204

    async def delivered_reported() -> bool:
        return any(b["status"] == "delivered" for b in callbacks.taken())

    await wait_until(delivered_reported, what="the delivered callback")

    # The customer answers: a person has the thread, so the agent stays silent.
    [before] = await _tickets(service, ws, sent["ticket_id"])
    assert before["unaddressed"] is False
    assert before["helper_bot"] is False
    await text_in(service, sid="SM" + "1" * 32, sender=CUSTOMER, to=NUMBER, body="Thanks!")
    await _handled(db, 1)
    assert llm.requests == []
    assert len(twilio.messages) == 1
    [after] = await _tickets(service, ws, sent["ticket_id"])
    assert after["unaddressed"] is True
    waiting = await _ok(service, ws, "GET", "/v1/tickets", query="unaddressed:true")
    assert [t["id"] for t in waiting["data"]["tickets"]] == [sent["ticket_id"]]


async def test_tickets_answer_the_seed_s_examples(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    owner, _ = await _owner(db, ws)
    person = await _member(db, ws, "person_24@example.com", "Person 24")
    first = await _ticket(service, ws, CUSTOMER)
    other = await _ticket(service, ws, "+14155554444")

    autoassigned = await _ok(service, ws, "PUT", f"/v1/tickets/{first}", user_id="autoassign")
    [ticket] = autoassigned["data"]["tickets"]
    assert set(ticket) == TICKET
    assert set(autoassigned) == {"status", "data"}
    assert (ticket["id"], ticket["user_id"], ticket["status"]) == (first, owner, "Open")
    assert ticket["helper_bot"] is True
    unassigned = await _ok(service, ws, "PUT", f"/v1/tickets/{first}", user_id="unassign")
    assert unassigned["data"]["tickets"][0]["user_id"] is None

    both = f"{first}%2C{other}"
    by_email = await _ok(
        service, ws, "PUT", f"/v1/tickets/{both}", user_email="person_24@example.com"
    )
    assert [(t["id"], t["user_id"]) for t in by_email["data"]["tickets"]] == [
        (first, person),
        (other, person),
    ]
    by_id = await _ok(service, ws, "PUT", f"/v1/tickets/{other}%2C{first}", user_id=owner)
    assert [(t["id"], t["user_id"]) for t in by_id["data"]["tickets"]] == [
        (other, owner),
        (first, owner),
    ]

    closed = await _ok(service, ws, "PUT", f"/v1/tickets/{first}", status="Closed")
    assert closed["data"]["tickets"][0]["status"] == "Closed"
    assert closed["data"]["tickets"][0]["unaddressed"] is False
    pending = await _ok(service, ws, "PUT", f"/v1/tickets/{both}", status="Pending")
    assert [t["status"] for t in pending["data"]["tickets"]] == ["Pending", "Pending"]
    addressed = await _ok(service, ws, "PUT", f"/v1/tickets/{other}", unaddressed=False)
    assert addressed["data"]["tickets"][0]["unaddressed"] is False

    fetched = await _ok(service, ws, "GET", f"/v1/tickets/{both}", page=1)
    assert set(fetched) == {"status", "data", "page"}
    assert [t["id"] for t in fetched["data"]["tickets"]] == [first, other]
    listed = await _ok(service, ws, "GET", "/v1/tickets", page=1)
    assert set(listed) == {"status", "data", "page", "limit"}
    assert (listed["data"]["total_count"], listed["limit"]) == (2, 30)
    assert {t["id"] for t in listed["data"]["tickets"]} == {first, other}
    await _ok(service, ws, "PUT", f"/v1/tickets/{other}", status="Open")
    found = await _ok(service, ws, "GET", "/v1/tickets", query="status:Open", page=1)
    assert [t["id"] for t in found["data"]["tickets"]] == [other]
    assert found["data"]["total_count"] == 1
    for query, ids in (
        (f"user_id:{owner}", {first, other}),
        ("user_id:none", set()),
        ("status:Open,Pending", {first, other}),
        ("4444", {other}),
        (f"phone:{CUSTOMER}", {first}),
    ):
        found = await _ok(service, ws, "GET", "/v1/tickets", query=query)
        assert {t["id"] for t in found["data"]["tickets"]} == ids, query
    status, refused = await inbox(service, ws, "GET", "/v1/tickets", query="colour:red")
    assert (status, refused["error"]["code"]) == (422, "validation_error")

    # A new kickoff to the same customer starts a new ticket; the first is its previous one.
    again = await _ticket(service, ws, CUSTOMER, "Hi again!")
    earlier = await _ok(service, ws, "GET", f"/v1/tickets/{again}/previous")
    [shown] = earlier["data"]["tickets"]
    assert set(shown) == EARLIER_TICKET
    assert (shown["id"], shown["channel"], shown["user"]["id"]) == (first, "sms", owner)
    assert shown["account_subdomain"] == "sunrise-dental"
    # Reopening it while the new one is live would leave two live threads with one customer.
    status, conflict = await inbox(service, ws, "PUT", f"/v1/tickets/{first}", status="Open")
    assert (status, conflict["error"]["code"]) == (409, "another_thread_live")

    stream = await _ok(service, ws, "GET", f"/v1/tickets/{first}/events", page=1)
    kinds = [element["element_type"] for element in stream["data"]["events"]]
    assert {"StatusChange", "OwnerChange", "SmsMessage"} <= set(kinds)
    for element in stream["data"]["events"]:
        assert set(element) == ELEMENTS[element["element_type"]], element
    owners = [e for e in stream["data"]["events"] if e["element_type"] == "OwnerChange"]
    # Newest first: the last owner change handed the ticket from Person 24 to the owner.
    assert (owners[0]["owner_id"], owners[0]["old_owner_id"]) == (owner, person)


async def test_autoassign_takes_turns_over_the_enabled_members(
    service: Service, db: Database
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    owner, _ = await _owner(db, ws)
    member = await _member(db, ws, "second@example.com", "Second")
    tickets = [await _ticket(service, ws, f"+1415555{n:04d}") for n in (1001, 1002, 1003)]

    owners = []
    for ticket in tickets:
        body = await _ok(service, ws, "PUT", f"/v1/tickets/{ticket}", user_id="autoassign")
        owners.append(body["data"]["tickets"][0]["user_id"])
    assert owners == [owner, member, owner]
    together = await _ok(
        service, ws, "PUT", f"/v1/tickets/{tickets[0]}%2C{tickets[1]}", user_id="autoassign"
    )
    assert [t["user_id"] for t in together["data"]["tickets"]] == [member, owner]

    await _sql(db, "UPDATE memberships SET enabled = false WHERE user_id = :u", u=member)
    for ticket in tickets:
        body = await _ok(service, ws, "PUT", f"/v1/tickets/{ticket}", user_id="autoassign")
        assert body["data"]["tickets"][0]["user_id"] == owner


async def test_events_from_the_api_and_from_the_agent_share_the_stream(
    service: Service, db: Database, llm: ScriptedLLM, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    owner, _ = await _owner(db, ws)
    ticket = await _ticket(service, ws, CUSTOMER)
    [shown] = await _tickets(service, ws, ticket)
    contact = shown["contact"]

    # The seed's three ways to log one.
    logged = await _ok(
        service,
        ws,
        "POST",
        f"/v1/contacts/{contact}/events",
        type="sale",
        context="Wanted a new watch ($99.99) with no warranty",
        revenue=99.99,
    )
    event = logged["data"]["event"]
    assert set(event) == CUSTOM_EVENT
    assert (event["ticket_id"], event["contact_id"], event["user_id"]) == (ticket, contact, owner)
    assert (event["type"], event["revenue"], event["element_type"]) == (
        "sale",
        99.99,
        "CustomEvent",
    )
    by_phone = await _ok(
        service,
        ws,
        "POST",
        "/v1/events",
        phone="+15551234567",
        type="sale",
        context="Bought an avocado ($2) and was interested in a subscription",
        revenue=2.0,
    )
    assert set(by_phone["data"]["event"]) == CUSTOM_EVENT
    assert by_phone["data"]["event"]["ticket_id"] != ticket
    on_ticket = await _ok(
        service,
        ws,
        "POST",
        f"/v1/tickets/{ticket}/events",
        type="sale",
        context="Wanted one hat ($10) and upsold warranty ($5.50)",
        revenue=15.5,
    )
    assert on_ticket["data"]["event"]["ticket_id"] == ticket

    # The agent logs one of its own while answering the customer.
    llm.script(
        tool_call("log_event", type="lead", context="Asked about whitening", revenue=120.0),
        reply("Thanks! Someone will follow up about whitening."),
    )
    await text_in(
        service, sid="SM" + "2" * 32, sender=CUSTOMER, to=NUMBER, body="How much is whitening?"
    )
    await twilio.wait_for_messages(2)

    stream = await _ok(service, ws, "GET", f"/v1/tickets/{ticket}/events", page=1)
    assert (stream["page"], stream["limit"]) == (1, 30)
    elements = stream["data"]["events"]
    for element in elements:
        assert set(element) == ELEMENTS[element["element_type"]], element
    # Newest first: messages by when they were written, events by when they happened.
    moments = [e.get("created_at", e["sent_at"]) for e in elements]
    assert moments == sorted(moments, reverse=True)
    custom = {
        (e["type"], e["revenue"], e["user_id"])
        for e in elements
        if e["element_type"] == "CustomEvent"
    }
    assert {("sale", 99.99, owner), ("sale", 15.5, owner), ("lead", 120.0, None)} <= custom
    texts = [(e["direction"], e["message"]) for e in elements if e["element_type"] == "SmsMessage"]
    assert ("in", "How much is whitening?") in texts
    assert ("out", "Hi!") in texts
    assert any(e["element_type"] == "StatusChange" and e["status"] == "Open" for e in elements)


async def test_messages_are_searched_and_scheduled_ones_canceled(
    service: Service, db: Database, twilio: TwilioStub, callbacks: Callbacks
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    owner, owner_name = await _owner(db, ws)
    sender = "+15105551234"
    words = "I kept hearing that you had great service 😀!"
    await text_in(service, sid="SM" + "3" * 32, sender=sender, to=NUMBER, body=words)
    await twilio.wait_for_messages(1)  # the agent's answer

    listed = await _ok(service, ws, "GET", "/v1/messages", page=1)
    assert set(listed) == {"status", "data", "page"}
    for message in listed["data"]["messages"]:
        assert set(message) == SMS_MESSAGE
    [received] = [m for m in listed["data"]["messages"] if m["direction"] == "in"]
    assert (received["status"], received["sender_type"], received["from"]) == (
        "delivered",
        None,
        sender,
    )
    one = await _ok(service, ws, "GET", f"/v1/messages/{received['event_id']}")
    assert one["data"]["message"] == received

    now = time.time()
    for extra in ({"direction": "in"}, {"direction": "", "document": "false"}):
        found = await _ok(
            service,
            ws,
            "GET",
            "/v1/messages",
            query="hear",
            page=1,
            status="delivered",
            to=NUMBER,
            **{"from": sender, "created_at[from]": now - 6000, "created_at[to]": now + 60},
            **extra,
        )
        assert [m["event_id"] for m in found["data"]["messages"]] == [received["event_id"]]
    for query in ("direction:out", "nothing-like-this", f'"great service" from:{CUSTOMER}'):
        found = await _ok(service, ws, "GET", "/v1/messages", query=query)
        assert all(m["direction"] == "out" for m in found["data"]["messages"]), query
        assert received["event_id"] not in {m["event_id"] for m in found["data"]["messages"]}

    # The seed's "Send a Scheduled Message", ten minutes on.
    when = now + 600
    body = await _ok(
        service,
        ws,
        "POST",
        "/v1/messages",
        phone=CUSTOMER,
        message="test message",
        scheduled_for=when,
        **{"from": NUMBER},
        mark_addressed="true",
        tags="Some Tag, Another Tag",
        status_callback=callbacks.url,
    )
    pending = body["data"]["message"]
    assert set(pending) == PENDING_MESSAGE
    assert (pending["aborted"], pending["sender"], pending["element_type"]) == (
        False,
        owner_name,
        "PendingMessage",
    )
    assert pending["scheduled_for"] == pytest.approx(when, abs=0.01)
    assert pending["sent"] == {"element_id": None, "element_type": None}

    async def scheduled(**values: Any) -> list[str]:
        body = await _ok(service, ws, "GET", "/v1/messages/scheduled", **values)
        for message in body["data"]["messages"]:
            assert set(message) == PENDING_MESSAGE
        return [m["event_id"] for m in body["data"]["messages"]]

    mine = [pending["event_id"]]
    assert await scheduled(query="", page=1) == mine
    window = {"scheduled_for[from]": now, "scheduled_for[to]": now + 30 * 86400}
    assert await scheduled(query="", page=1, document="false", **window) == mine
    assert await scheduled(query="aborted: false", page=1, document="false") == mine
    assert await scheduled(**{"scheduled_for[to]": now + 60}) == []

    # The seed's cancel, its credentials in a JSON body.
    canceled = await _ok(service, ws, "DELETE", f"/v1/messages/{pending['event_id']}", via="json")
    aborted = canceled["data"]["message"]
    assert set(aborted) == PENDING_MESSAGE
    assert (aborted["aborted"], aborted["aborter_id"], aborted["aborted_by"]) == (
        True,
        owner,
        owner_name,
    )
    assert aborted["abort_reason"] == "manually cancelled"
    assert await scheduled(query="aborted: false") == []
    assert await scheduled(query="aborted:true") == mine
    assert not any(m["To"] == CUSTOMER for m in twilio.messages)

    async def cancel_reported() -> bool:
        return any(b["status"] == "canceled" for b in callbacks.taken())

    await wait_until(cancel_reported, what="the canceled callback")
    [report] = callbacks.taken()
    assert (report["event_id"], report["direction"]) == (pending["event_id"], "out")

    # A text that went cannot be unsent: deleting hides it from the inbox.
    answer = next(m for m in listed["data"]["messages"] if m["direction"] == "out")
    hidden = await _ok(service, ws, "DELETE", f"/v1/messages/{answer['event_id']}")
    assert set(hidden["data"]["message"]) == SMS_MESSAGE
    status, gone = await inbox(service, ws, "GET", f"/v1/messages/{answer['event_id']}")
    assert (status, gone["status"], gone["error"]["code"]) == (404, 404, "not_found")
    listed = await _ok(service, ws, "GET", "/v1/messages")
    assert answer["event_id"] not in {m["event_id"] for m in listed["data"]["messages"]}


async def test_another_inbox_s_ids_are_404_and_change_nothing(
    service: Service, db: Database
) -> None:
    ours = await new_workspace(db, "Sunrise Dental", NUMBER)
    theirs = await new_workspace(db, "Other Dental", "+14155550000")
    ticket = await _ticket(service, ours, CUSTOMER)
    [before] = await _tickets(service, ours, ticket)
    scheduled = await _ok(
        service,
        ours,
        "POST",
        "/v1/messages",
        phone=CUSTOMER,
        message="Just wanted to follow up.",
        scheduled_for=time.time() + 3600,
    )
    message = scheduled["data"]["message"]["event_id"]
    [(events_before,)] = await _sql(db, "SELECT count(*) FROM events")

    for method, path, values in (
        ("PUT", f"/v1/tickets/{ticket}", {"status": "Closed", "user_id": "autoassign"}),
        ("GET", f"/v1/tickets/{ticket}", {}),
        ("GET", f"/v1/tickets/{ticket}/previous", {}),
        ("GET", f"/v1/tickets/{ticket}/events", {}),
        ("POST", f"/v1/tickets/{ticket}/events", {"type": "sale", "revenue": 5}),
        ("POST", f"/v1/contacts/{before['contact']}/events", {"type": "sale"}),
        ("GET", f"/v1/messages/{message}", {}),
        ("DELETE", f"/v1/messages/{message}", {}),
        ("POST", "/v1/messages", {"contact_id": before["contact"], "message": "Hi"}),
    ):
        status, body = await inbox(service, theirs, method, path, **values)
        assert status == 404, (method, path, body)
        assert (body["status"], body["error"]["code"]) == (404, "not_found"), body

    listed = await _ok(service, theirs, "GET", "/v1/messages")
    assert listed["data"]["messages"] == []
    assert (await _ok(service, theirs, "GET", "/v1/tickets"))["data"]["total_count"] == 0
    [after] = await _tickets(service, ours, ticket)
    assert after == before
    still = await _ok(service, ours, "GET", "/v1/messages/scheduled", query="aborted:false")
    assert [m["event_id"] for m in still["data"]["messages"]] == [message]
    assert await _sql(db, "SELECT count(*) FROM events") == [(events_before,)]
