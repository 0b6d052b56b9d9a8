"""Workspaces: created with their numbers and credentials, texts routed by number, and every
route scoped to the key's workspace (another workspace's data is 404, never read or changed)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from tests.fakes.twilio_server import TwilioStub
from tests.harness import API_KEY, FROM_NUMBER, Database, Service, count_rows, wait_until
from tests.workspaces import call, new_workspace, text_in
from webhooks.cli import main


async def test_a_text_goes_to_the_workspace_of_the_number(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    first = await new_workspace(db, "North Dental", "+15550002222")
    second = await new_workspace(db, "South Dental", "+15550003333")
    for sid, number in (("SMn1", "+15550002222"), ("SMs1", "+15550003333"), ("SMd1", FROM_NUMBER)):
        status, _, _ = await text_in(
            service, sid=sid, sender="+13105551234", to=number, body="What are your hours?"
        )
        assert status == 200

    seen: dict[str, list[Any]] = {}
    for key in (first.api_key, second.api_key, API_KEY):
        _, page = await call(service, "GET", "/v1/conversations", key)
        seen[key] = page["data"]
    assert [len(v) for v in seen.values()] == [1, 1, 1]
    # One contact per workspace: the same phone is three separate people's records.
    assert await count_rows(db, "contacts") == 3
    ids = {v[0]["id"] for v in seen.values()}
    assert len(ids) == 3


async def test_isolation_every_route_with_the_other_key(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    mine = await new_workspace(db, "Mine", "+15550002222")
    theirs = await new_workspace(db, "Theirs", "+15550003333")
    status, started = await call(
        service,
        "POST",
        "/v1/conversations",
        mine.api_key,
        json={"to": "+13105551234", "message": "Hi from Mine"},
    )
    assert status == 201, started
    conversation_id, message_id = started["conversation_id"], started["message_id"]
    status, scheduled = await call(
        service,
        "POST",
        "/v1/messages",
        mine.api_key,
        json={"to": "+13105551234", "message": "Later", "send_at": "2031-01-01T17:00:00Z"},
    )
    assert status == 201, scheduled
    status, _ = await call(
        service,
        "POST",
        "/v1/templates",
        mine.api_key,
        json={"id": "mine_only", "body": "Hi {first_name}"},
    )
    assert status == 201
    await twilio.wait_for_messages(1)
    before = {t: await count_rows(db, t) for t in ("conversations", "messages", "templates")}

    attempts: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/conversations/{conversation_id}", None),
        ("PATCH", f"/v1/conversations/{conversation_id}", {"status": "closed"}),
        ("POST", f"/v1/conversations/{conversation_id}/messages", {"message": "Hijack"}),
        ("GET", f"/v1/messages/{message_id}", None),
        ("DELETE", f"/v1/messages/{scheduled['message_id']}", None),
        ("GET", "/v1/templates/mine_only", None),
        ("PUT", "/v1/templates/mine_only", {"body": "Changed"}),
        ("DELETE", "/v1/templates/mine_only", None),
    ]
    for method, path, body in attempts:
        status, answer = await call(service, method, path, theirs.api_key, json=body)
        assert status == 404, (method, path, answer)
        assert answer["error"]["code"] == "not_found"

    # Lists show only their own.
    _, page = await call(service, "GET", "/v1/conversations", theirs.api_key)
    assert page["data"] == []
    _, templates = await call(service, "GET", "/v1/templates", theirs.api_key)
    assert "mine_only" not in {t["id"] for t in templates["data"]}
    # The compatible routes: another workspace's id, thread or number is refused too.
    avoca = "/compat/avoca/v1/outbound/sms/send"
    status, _ = await call(
        service,
        "POST",
        avoca,
        theirs.api_key,
        headers={"X-Workspace-ID": mine.id},
        json={"to": "+13105551234", "message": "x", "message_type": "transactional"},
    )
    assert status == 401
    status, _ = await call(
        service,
        "POST",
        avoca,
        theirs.api_key,
        headers={"X-Workspace-ID": theirs.id},
        json={
            "to": "+13105551234",
            "message": "x",
            "message_type": "transactional",
            "conversation_id": conversation_id,
        },
    )
    assert status == 404
    status, _ = await call(
        service,
        "POST",
        "/compat/helloannie/v1/sms",
        theirs.api_key,
        json={"fromNumber": "+15550002222", "toNumber": "+13105551234", "message": "x"},
    )
    assert status == 422
    status, _ = await call(
        service,
        "POST",
        "/v1/conversations",
        theirs.api_key,
        json={"to": "+13105551234", "from": "+15550002222", "message": "x"},
    )
    assert status == 422

    # Nothing of Mine changed.
    after = {t: await count_rows(db, t) for t in ("conversations", "messages", "templates")}
    assert after == before
    _, thread = await call(service, "GET", f"/v1/conversations/{conversation_id}", mine.api_key)
    assert (thread["status"], thread["mode"]) == ("open", "agent")
    _, still = await call(service, "GET", f"/v1/messages/{scheduled['message_id']}", mine.api_key)
    assert still["status"] == "scheduled"
    _, template = await call(service, "GET", "/v1/templates/mine_only", mine.api_key)
    assert template["body"] == "Hi {first_name}"


def test_workspaces_cli_create_list_rotate(sqlite_db: Database, tmp_path: Any) -> None:
    env = {"SMSAGENT_DATABASE_URL": sqlite_db.url, "SMSAGENT_SMS_PROVIDER": "console"}
    runner = CliRunner()
    made = runner.invoke(
        main,
        [
            "workspaces",
            "create",
            "Bright Smiles",
            "--vertical",
            "dental",
            "--timezone",
            "America/Denver",
            "--from",
            "(555) 123-4567",
            "--json",
        ],
        env=env,
    )
    assert made.exit_code == 0, made.output
    shown = json.loads(made.output)
    assert set(shown) == {
        "id",
        "api_key",
        "avaamo_channel_uuid",
        "avochato_auth_id",
        "avochato_auth_secret",
    }
    listed = runner.invoke(main, ["workspaces", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = [r for r in json.loads(listed.output) if r["id"] == shown["id"]]
    assert row["numbers"] == ["+15551234567"]
    # Secrets are kept only as hashes.
    assert shown["api_key"] not in listed.output
    raw = (tmp_path / "smsagent.db").read_bytes()
    for secret in ("api_key", "avaamo_channel_uuid", "avochato_auth_secret"):
        assert shown[secret].encode() not in raw

    taken = runner.invoke(
        main, ["workspaces", "create", "Copycat", "--from", "+15551234567"], env=env
    )
    assert taken.exit_code != 0
    assert "already sends for another workspace" in taken.output

    rotated = runner.invoke(main, ["workspaces", "rotate-key", shown["id"], "--json"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.output)["api_key"] != shown["api_key"]
    missing = runner.invoke(main, ["workspaces", "rotate-key", "ws_nope"], env=env)
    assert missing.exit_code != 0

    hooked = runner.invoke(
        main,
        ["workspaces", "webhook", shown["id"], "https://crm.example.com/hooks", "--json"],
        env=env,
    )
    assert hooked.exit_code == 0, hooked.output
    assert json.loads(hooked.output)["webhook_secret"].startswith("whsec_")
    listed = runner.invoke(main, ["workspaces", "list", "--json"], env=env)
    [row] = [r for r in json.loads(listed.output) if r["id"] == shown["id"]]
    assert row["webhook_url"] == "https://crm.example.com/hooks"
    off = runner.invoke(main, ["workspaces", "webhook", shown["id"], "--off"], env=env)
    assert off.exit_code == 0, off.output


async def test_a_rotated_key_stops_working_at_once(service: Service, db: Database) -> None:
    from agent.workspaces import rotate_api_key
    from storage.engine import create_engine, create_session_factory

    ws = await new_workspace(db, "Rotating", "+15550002222")
    assert (await call(service, "GET", "/v1/conversations", ws.api_key))[0] == 200
    engine = create_engine(db.url, schema=db.schema)
    try:
        new_key = await rotate_api_key(create_session_factory(engine), ws.id)
    finally:
        await engine.dispose()
    assert new_key is not None
    assert (await call(service, "GET", "/v1/conversations", ws.api_key))[0] == 401
    assert (await call(service, "GET", "/v1/conversations", new_key))[0] == 200


async def test_the_default_key_still_works(service: Service, twilio: TwilioStub) -> None:
    status, body = await service.kickoff()
    assert status == 201, body
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["From"] == FROM_NUMBER

    async def listed() -> bool:
        _, page, _ = await service.request("GET", "/v1/conversations")
        return len(page["data"]) == 1

    await wait_until(listed, what="the kickoff listed")
