"""Every inbox route, tried with another workspace's credentials: nothing of the first is
read or changed."""

from __future__ import annotations

import json
from typing import Any

from agent.campaigns import CampaignSpec, save_campaign
from storage.engine import create_engine, create_session_factory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, count_rows
from tests.inbox import inbox
from tests.workspaces import call, new_workspace
from webhooks.avochato.routes import inbox_routes

MINE, THEIRS = "+15550002222", "+15550003333"
PATIENT = "+13105551234"


async def _campaign(db: Database, workspace_id: str) -> None:
    engine = create_engine(db.url, schema=db.schema)
    try:
        spec = CampaignSpec.model_validate(
            {
                "key": "SMILE",
                "steps": [{"message": "one", "delay": 0}, {"message": "two", "delay": "1d"}],
            }
        )
        await save_campaign(create_session_factory(engine), workspace_id, spec)
    finally:
        await engine.dispose()


async def test_another_workspaces_credentials_see_and_change_nothing(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    mine = await new_workspace(db, "Mine Dental", MINE)
    theirs = await new_workspace(db, "Theirs Dental", THEIRS)
    # What Mine has: a thread with a sent text, a scheduled text, a tagged contact, a teammate,
    # a draft broadcast and a campaign someone is in.
    status, started = await call(
        service, "POST", "/v1/conversations", mine.api_key, json={"to": PATIENT, "message": "Hi"}
    )
    assert status == 201, started
    status, later = await call(
        service,
        "POST",
        "/v1/messages",
        mine.api_key,
        json={"to": PATIENT, "message": "Later", "send_at": "2031-01-01T17:00:00Z"},
    )
    assert status == 201, later
    status, upserted = await inbox(
        service,
        mine,
        "POST",
        "/v1/contacts",
        contacts=[{"phone": "+14155553333", "name": "Bob McTest", "tags": "vip"}],
    )
    assert status == 200, upserted
    contact_id = upserted["data"]["contact"]["id"]
    status, member = await inbox(
        service, mine, "POST", "/v1/users", email="dana@mine.example", name="Dana"
    )
    assert status == 200, member
    user_id = member["data"]["user"]["id"]
    status, drafted = await inbox(
        service, mine, "POST", "/v1/broadcasts", message="Spring special", via_tags="vip"
    )
    assert status == 200, drafted
    broadcast_id = drafted["data"]["broadcast"]["id"]
    await _campaign(db, mine.id)
    status, enrolled = await call(
        service, "POST", "/v1/campaigns/SMILE/enroll", mine.api_key, json={"to": "+14155553333"}
    )
    assert status == 201, enrolled
    await twilio.wait_for_messages(2)

    tables = (
        "contacts",
        "conversations",
        "messages",
        "events",
        "memberships",
        "broadcasts",
        "broadcast_recipients",
        "campaign_enrollments",
        "tags",
    )
    before = {table: await count_rows(db, table) for table in tables}
    secrets_of_mine = [contact_id, started["conversation_id"], later["message_id"], user_id]
    secrets_of_mine += [broadcast_id, "Bob McTest", "dana@mine.example", PATIENT]

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/contacts/{contact_id}", {}),
        ("POST", f"/v1/contacts/{contact_id}/tags", {"tags": "hijacked"}),
        ("DELETE", f"/v1/contacts/{contact_id}/tags", {"tags": "vip"}),
        ("POST", f"/v1/contacts/{contact_id}/events", {"type": "x", "context": "y"}),
        ("GET", f"/v1/tickets/{started['conversation_id']}", {}),
        ("PUT", f"/v1/tickets/{started['conversation_id']}", {"status": "closed"}),
        ("GET", f"/v1/tickets/{started['conversation_id']}/previous", {}),
        ("GET", f"/v1/tickets/{started['conversation_id']}/events", {}),
        ("POST", f"/v1/tickets/{started['conversation_id']}/events", {"type": "x"}),
        ("GET", f"/v1/messages/{later['message_id']}", {}),
        ("DELETE", f"/v1/messages/{later['message_id']}", {}),
        ("GET", f"/v1/users/{user_id}", {}),
        ("PUT", f"/v1/users/{user_id}", {"role": "owner"}),
        ("GET", f"/v1/users/{user_id}/accounts", {}),
        ("POST", f"/v1/users/{user_id}/disable", {}),
        ("POST", f"/v1/users/{user_id}/enable", {}),
        ("POST", f"/v1/users/{user_id}/mfa_phone", {"phone": "+14155550000"}),
        ("POST", f"/v1/users/{user_id}/password_reset", {}),
        ("DELETE", f"/v1/users/{user_id}", {}),
        ("GET", f"/v1/broadcasts/{broadcast_id}", {}),
        ("POST", f"/v1/broadcasts/{broadcast_id}", {"message": "Hijacked"}),
        ("POST", f"/v1/broadcasts/{broadcast_id}/publish", {}),
        ("GET", f"/v1/broadcasts/{broadcast_id}/audience_count", {}),
        ("GET", "/v1/campaigns/SMILE", {}),
        ("POST", "/v1/campaigns/SMILE/cancel", {"phone": "+14155553333", "recursive": "1"}),
        ("POST", "/v1/messages", {"contact_id": contact_id, "message": "Hijack"}),
    ]
    tried = set()
    for method, path, params in attempts:
        status, body = await inbox(service, theirs, method, path, **params)
        assert status in (404, 422), (method, path, status, body)
        text = json.dumps(body)
        for secret in secrets_of_mine:
            assert secret not in text or secret in path or secret in str(params), (path, body)
        tried.add((method, _template(method, path)))

    # Lists and searches show Theirs nothing of Mine.
    listed: tuple[tuple[str, dict[str, Any]], ...] = (
        ("/v1/contacts", {}),
        ("/v1/contacts", {"query": "name:Bob"}),
        ("/v1/tickets", {}),
        ("/v1/messages", {}),
        ("/v1/messages/scheduled", {}),
        ("/v1/users", {}),
        ("/v1/tags", {}),
        ("/v1/broadcasts", {}),
        ("/v1/campaigns", {}),
        ("/v1/accounts", {}),
        ("/v1/accounts/mine-dental", {}),
        ("/v1/whoami", {}),
    )
    for path, params in listed:
        status, body = await inbox(service, theirs, "GET", path, **params)
        assert status in (200, 404), (path, body)
        text = json.dumps(body)
        for secret in [*secrets_of_mine, "vip", "SMILE", "mine-dental"]:
            assert secret not in text, (path, secret, body)
        tried.add(("GET", _template("GET", path)))

    # Every route with an id in its path was tried.
    with_ids = {(r.method, r.path.removeprefix("/compat/avochato")) for r in inbox_routes()}
    with_ids = {(m, p) for m, p in with_ids if "{" in p}
    assert with_ids <= tried, sorted(with_ids - tried)

    after = {table: await count_rows(db, table) for table in tables}
    # Theirs may have written its own rows (an event by phone, a contact), never changed Mine's.
    assert after == before, (before, after)
    status, thread = await call(
        service, "GET", f"/v1/conversations/{started['conversation_id']}", mine.api_key
    )
    assert (thread["status"], thread["contact"]["tags"]) == ("open", [])
    _, still = await call(service, "GET", f"/v1/messages/{later['message_id']}", mine.api_key)
    assert still["status"] == "scheduled"
    status, body = await inbox(service, mine, "GET", f"/v1/contacts/{contact_id}")
    assert body["data"]["contacts"][0]["tags"] == ["vip"]
    status, body = await inbox(service, mine, "GET", f"/v1/users/{user_id}")
    assert (status, body["data"]["user"]["enabled"]) == (200, True)
    status, body = await inbox(service, mine, "GET", f"/v1/broadcasts/{broadcast_id}")
    assert body["data"]["broadcasts"][0]["status"] == "draft"
    assert body["data"]["broadcasts"][0]["message"] == "Spring special"


def _template(method: str, path: str) -> str:
    """The route a concrete path was made from (`/v1/users/usr_…` → `/v1/users/{id}`)."""
    for route in inbox_routes():
        if route.method != method:
            continue
        pattern = route.path.removeprefix("/compat/avochato").split("/")
        parts = path.split("/")
        if len(pattern) == len(parts) and all(
            p == q or (p.startswith("{") and q) for p, q in zip(pattern, parts, strict=True)
        ):
            return "/".join(pattern)
    return path
