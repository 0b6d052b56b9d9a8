"""Campaigns: defined from YAML, started by a customer's keyword or the API, listed and called
off through the inbox API as Avochato documents it."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from agent.campaigns import CampaignSpec, save_campaign
from agent.evals.scripted import ScriptedLLM
from agent.workspaces import Credentials
from storage.engine import create_engine, create_session_factory
from tests.conftest import ServiceFactory
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, count_rows, wait_until
from tests.inbox import inbox
from tests.workspaces import call, new_workspace, text_in
from webhooks.cli import main

NUMBER = "+15550002222"
# The seed's customer.
PHONE = "+15105551234"
STEP_KEYS = {
    "id",
    "key",
    "raw_text",
    "follow_up_message",
    "follow_up_delay",
    "media_url",
    "hash_id",
    "hotkey",
}
DAY = 86400


async def new_campaign(db: Database, workspace_id: str, spec: dict[str, Any]) -> str:
    engine = create_engine(db.url, schema=db.schema)
    try:
        saved = await save_campaign(
            create_session_factory(engine), workspace_id, CampaignSpec.model_validate(spec)
        )
    finally:
        await engine.dispose()
    return saved.campaign_id


def seed_campaign(n: int, key: str) -> dict[str, Any]:
    """The seed's campaigns: two texts, the second two days on."""
    return {
        "key": key,
        "name": f"Campaign {n}",
        "steps": [
            {"message": f"[Campaign {n}] first message", "delay": "0"},
            {"message": f"[Campaign {n}] second message", "delay": "2d"},
        ],
    }


DRIP = {
    "key": "SMILE",
    "name": "New patient welcome",
    "steps": [
        {"message": "Welcome to Sunrise Dental!", "delay": 0},
        {"message": "How was your first visit?", "delay": "2d"},
        {"message": "Time to book a cleaning.", "delay": "3d", "media_url": "https://x.test/a.png"},
    ],
}


async def thread_of(service: Service, ws: Credentials, phone: str) -> Any:
    status, page = await call(service, "GET", f"/v1/conversations?phone={phone}", ws.api_key)
    assert status == 200, page
    [item] = page["data"]
    status, thread = await call(service, "GET", f"/v1/conversations/{item['id']}", ws.api_key)
    assert status == 200, thread
    return thread


def states(thread: Any) -> list[str]:
    """Each outbound text's state: `gone` once handed to the provider, else its status."""
    return [
        "gone" if m["status"] in ("queued", "sending", "sent", "delivered") else m["status"]
        for m in thread["messages"]
        if m["direction"] == "outbound"
    ]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Defining campaigns


def test_yaml_files_make_campaigns_and_bad_ones_name_the_field(
    sqlite_db: Database, tmp_path: Path
) -> None:
    env = {"SMSAGENT_DATABASE_URL": sqlite_db.url, "SMSAGENT_SMS_PROVIDER": "console"}
    runner = CliRunner()
    made = runner.invoke(
        main, ["workspaces", "create", "Sunrise", "--from", NUMBER, "--json"], env=env
    )
    assert made.exit_code == 0, made.output
    workspace_id = json.loads(made.output)["id"]
    file = tmp_path / "smile.yaml"
    file.write_text(
        "key: SMILE\n"
        "name: New patient welcome\n"
        "steps:\n"
        '  - {message: "Welcome to Sunrise Dental!", delay: "0"}\n'
        '  - {message: "How was your first visit?", delay: "2d"}\n'
        '  - {message: "Book a cleaning?", delay: "1d12h", media_url: "https://x.test/a.png"}\n'
    )

    created = runner.invoke(
        main, ["campaigns", "create", str(file), "--workspace", workspace_id, "--json"], env=env
    )
    assert created.exit_code == 0, created.output
    first = json.loads(created.output)
    assert (first["key"], first["steps"], first["created"]) == ("SMILE", 3, True)

    # The same keyword in another case replaces it, keeping its id.
    file.write_text('key: smile\nsteps: [{message: "Hello again"}]\n')
    replaced = runner.invoke(
        main, ["campaigns", "create", str(file), "--workspace", workspace_id], env=env
    )
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.startswith(f"replaced campaign smile ({first['campaign_id']})")
    listed = runner.invoke(main, ["campaigns", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["id"], row["key"], row["workspace_id"]) == (
        first["campaign_id"],
        "smile",
        workspace_id,
    )
    assert row["steps"] == [{"message": "Hello again", "delay_seconds": 0, "media_url": None}]

    refused = {
        'key: SMILE\nsteps: [{message: "a"}, {message: "b", delay: "2 weeks"}]\n': "steps.1.delay",
        'key: STOP\nsteps: [{message: "a"}]\n': "key: 'STOP' already means opt-out",
        'key: TWO WORDS\nsteps: [{message: "a"}]\n': "key: a keyword is one word",
        'key: LATE\nsteps: [{message: "a", delay: 1h}]\n': "steps: the first step goes at once",
        "key: EMPTY\nsteps: []\n": "steps: List should have at least 1 item",
        'key: X\nsteps: [{message: "a", wait: 1h}]\n': "steps.0.wait: Extra inputs",
        "key: [unclosed\n": "not YAML",
    }
    for text, error in refused.items():
        file.write_text(text)
        result = runner.invoke(
            main, ["campaigns", "create", str(file), "--workspace", workspace_id], env=env
        )
        assert result.exit_code != 0, text
        assert error in result.output, result.output
    file.write_text('key: SMILE\nsteps: [{message: "a"}]\n')
    missing = runner.invoke(
        main, ["campaigns", "create", str(file), "--workspace", "ws_x"], env=env
    )
    assert missing.exit_code != 0
    assert "no workspace ws_x" in missing.output


# The inbox API


async def test_fetch_and_list_answer_the_documented_steps(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    one = await new_campaign(db, ws.id, seed_campaign(1, "one"))
    two = await new_campaign(db, ws.id, seed_campaign(2, "two"))
    drip = await new_campaign(db, ws.id, DRIP)

    # GET /v1/campaigns/one?auth_id=…&auth_secret=…&page=1
    status, body = await inbox(service, ws, "GET", "/v1/campaigns/one", page=1)
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {
            "campaigns": [
                {
                    "id": f"{one}.1",
                    "key": "one",
                    "raw_text": "[Campaign 1] first message",
                    "follow_up_message": "[Campaign 1] second message",
                    "follow_up_delay": 2 * DAY,
                    "media_url": None,
                    "hash_id": f"{one}.1",
                    "hotkey": None,
                }
            ]
        },
        "page": 1,
    }

    # GET /v1/campaigns?auth_id=…&auth_secret=…
    status, body = await inbox(service, ws, "GET", "/v1/campaigns")
    assert status == 200, body
    assert set(body) == {"status", "data", "page"}
    steps = body["data"]["campaigns"]
    assert all(set(step) == STEP_KEYS for step in steps)
    # A campaign of N texts is N-1 steps, each text with the next as its follow-up.
    assert [(s["key"], s["raw_text"], s["follow_up_message"]) for s in steps] == [
        ("one", "[Campaign 1] first message", "[Campaign 1] second message"),
        ("SMILE", "Welcome to Sunrise Dental!", "How was your first visit?"),
        ("SMILE", "How was your first visit?", "Time to book a cleaning."),
        ("two", "[Campaign 2] first message", "[Campaign 2] second message"),
    ]
    assert [s["follow_up_delay"] for s in steps] == [2 * DAY, 2 * DAY, 3 * DAY, 2 * DAY]
    assert [s["id"] for s in steps[1:3]] == [f"{drip}.1", f"{drip}.2"]
    status, body = await inbox(service, ws, "GET", "/v1/campaigns", page=2)
    assert (status, body["data"]["campaigns"], body["page"]) == (200, [], 2)

    # Keywords in any case, campaign ids and step ids, comma-separated; unknown ones left out.
    status, body = await inbox(
        service, ws, "GET", f"/v1/campaigns/TWO,{drip}.2,{one},nothing", via="query"
    )
    assert status == 200, body
    assert [s["id"] for s in body["data"]["campaigns"]] == [f"{two}.1", f"{drip}.2", f"{one}.1"]
    for missing in ("/v1/campaigns/nothing", f"/v1/campaigns/{drip}.3"):
        status, body = await inbox(service, ws, "GET", missing)
        assert status == 404, body
        assert body["status"] == 404


async def test_the_seed_cancel_examples(service: Service, db: Database, twilio: TwilioStub) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await new_campaign(db, ws.id, seed_campaign(1, "one"))
    for phone in (PHONE, "+15551234568"):
        status, body = await call(
            service, "POST", "/v1/campaigns/one/enroll", ws.api_key, json={"to": phone}
        )
        assert status == 201, body
    await twilio.wait_for_messages(2)

    examples: list[tuple[dict[str, Any], str, list[str]]] = [
        ({"phone": PHONE, "recursive": "1"}, "Processing 1 cancellations.", [PHONE]),
        ({"phone": PHONE}, "Processing 1 cancellations.", [PHONE]),
        (
            {"all": "1"},
            "Processing cancellation of all contacts from 1 campaigns. This may take a moment.",
            [],
        ),
        (
            {"contacts": [PHONE, "+15551234568"]},
            "Processing up to 2 cancellations.",
            [PHONE, "+15551234568"],
        ),
    ]
    for params, said, contacts in examples:
        status, body = await inbox(service, ws, "POST", "/v1/campaigns/one/cancel", **params)
        assert status == 200, body
        assert body == {
            "status": 200,
            "data": {"campaigns": said, "contacts": contacts, "ids": ["one"]},
        }
    # The first example already called off the first contact's step; `all` the second's.
    for phone in (PHONE, "+15551234568"):
        thread = await thread_of(service, ws, phone)
        assert states(thread) == ["gone", "canceled"]
        assert [e["type"] for e in thread["events"]].count("campaign.canceled") == 1

    refused: list[dict[str, Any]] = [
        {"phone": PHONE, "all": "1"},
        {},
        {"phone": "not a phone"},
        {"contacts": [PHONE, "12"]},
        {"phone": PHONE, "recursive": "maybe"},
    ]
    for params in refused:
        status, body = await inbox(service, ws, "POST", "/v1/campaigns/one/cancel", **params)
        assert status == 422, (params, body)
        assert body["status"] == 422
    # Form bodies and comma-separated contacts, as Avochato's clients send them.
    status, body = await inbox(
        service,
        ws,
        "POST",
        "/v1/campaigns/ONE,one/cancel",
        via="form",
        contacts=f"{PHONE}, (555) 123-4568",
    )
    assert status == 200, body
    assert body["data"] == {
        "campaigns": "Processing up to 2 cancellations.",
        "contacts": [PHONE, "+15551234568"],
        "ids": ["ONE", "one"],
    }


async def test_a_step_at_a_time_or_recursively(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await new_campaign(db, ws.id, DRIP)
    status, enrolled = await call(
        service, "POST", "/v1/campaigns/smile/enroll", ws.api_key, json={"to": "(510) 555-1234"}
    )
    assert status == 201, enrolled
    await twilio.wait_for_messages(1)

    # Removing the contact from the step they are on cancels its follow-up only.
    status, body = await inbox(service, ws, "POST", "/v1/campaigns/SMILE/cancel", phone=PHONE)
    assert status == 200, body
    thread = await thread_of(service, ws, PHONE)
    assert states(thread) == ["gone", "canceled", "scheduled"]

    status, body = await inbox(
        service, ws, "POST", "/v1/campaigns/SMILE/cancel", phone=PHONE, recursive=True
    )
    assert status == 200, body
    thread = await thread_of(service, ws, PHONE)
    assert states(thread) == ["gone", "canceled", "canceled"]
    canceled = [e["data"] for e in thread["events"] if e["type"] == "campaign.canceled"]
    assert [(c["recursive"], len(c["message_ids"])) for c in canceled] == [(False, 1), (True, 1)]
    # Nothing is left to call off: asking again changes nothing.
    status, _ = await inbox(
        service, ws, "POST", "/v1/campaigns/SMILE/cancel", phone=PHONE, recursive=1
    )
    assert status == 200
    assert states(await thread_of(service, ws, PHONE)) == states(thread)
    assert len(twilio.messages) == 1


# Keywords


async def test_a_keyword_text_starts_the_campaign_without_the_model(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await new_campaign(db, ws.id, DRIP)
    before = datetime.now().astimezone()

    status, _, _ = await text_in(
        service, sid="SM" + "a" * 32, sender=PHONE, to=NUMBER, body=" smile "
    )
    assert status == 200
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["Body"] == "Welcome to Sunrise Dental!"
    assert twilio.messages[0]["To"] == PHONE
    assert llm.requests == []

    thread = await thread_of(service, ws, PHONE)
    later = [m for m in thread["messages"] if m["status"] == "scheduled"]
    assert [m["body"] for m in later] == ["How was your first visit?", "Time to book a cleaning."]
    assert later[1]["media_urls"] == ["https://x.test/a.png"]
    second, third = (moment(m["send_at"]) for m in later)
    assert before + timedelta(days=2) <= second < before + timedelta(days=2, minutes=1)
    assert third - second == timedelta(days=3)
    [run] = thread["agent_runs"]
    assert (run["outcome"], run["model"]) == ("campaign", None)
    [started] = [e["data"] for e in thread["events"] if e["type"] == "campaign.enrolled"]
    assert started["source"] == "keyword"
    assert len(started["message_ids"]) == 3

    # Sent again, the keyword starts the campaign over: the steps still waiting are canceled.
    await text_in(service, sid="SM" + "b" * 32, sender=PHONE, to=NUMBER, body="SMILE")
    await twilio.wait_for_messages(2)
    thread = await thread_of(service, ws, PHONE)
    assert states(thread) == ["gone", "canceled", "canceled", "gone", "scheduled", "scheduled"]
    assert [e["data"]["source"] for e in thread["events"] if e["type"] == "campaign.canceled"] == [
        "restarted"
    ]
    assert llm.requests == []

    # A word that is no keyword of this workspace goes to the model.
    await text_in(service, sid="SM" + "c" * 32, sender=PHONE, to=NUMBER, body="thanks")
    await twilio.wait_for_messages(3)
    assert len(llm.requests) >= 1


async def test_a_step_due_at_night_waits_for_the_morning_and_the_next_counts_from_there(
    make_service: ServiceFactory, db: Database, twilio: TwilioStub
) -> None:
    service = await make_service(send_window="08:00-20:00")
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    # The customer's area code (510) is on Pacific time: the second step is due just after
    # 02:00 there, the third an hour after the second.
    pacific = ZoneInfo("America/Los_Angeles")
    now = datetime.now(pacific)
    night = datetime.combine(now.date() + timedelta(days=1), time(2, 0), tzinfo=pacific)
    delay = int((night - now).total_seconds()) + 60
    await new_campaign(
        db,
        ws.id,
        {
            "key": "NIGHT",
            "steps": [
                {"message": "Right away"},
                {"message": "In the morning", "delay": delay},
                {"message": "An hour later", "delay": "1h"},
            ],
        },
    )

    await text_in(service, sid="SM" + "9" * 32, sender=PHONE, to=NUMBER, body="night")
    # The reply to the keyword answers the customer at any hour.
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["Body"] == "Right away"
    thread = await thread_of(service, ws, PHONE)
    times = [moment(m["send_at"]) for m in thread["messages"] if m["status"] == "scheduled"]
    morning = night.replace(hour=8)
    assert times == [morning, morning + timedelta(hours=1)]


async def test_opting_out_leaves_campaigns_and_an_opted_out_contact_is_never_enrolled(
    service: Service, db: Database, twilio: TwilioStub, llm: ScriptedLLM
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await new_campaign(db, ws.id, DRIP)
    await text_in(service, sid="SM" + "d" * 32, sender=PHONE, to=NUMBER, body="SMILE")
    await twilio.wait_for_messages(1)

    await text_in(service, sid="SM" + "e" * 32, sender=PHONE, to=NUMBER, body="STOP")
    await twilio.wait_for_messages(2)
    assert "unsubscribed" in twilio.messages[1]["Body"]
    thread = await thread_of(service, ws, PHONE)
    assert states(thread) == ["gone", "canceled", "canceled", "gone"]

    enrollments = await count_rows(db, "campaign_enrollments")
    await text_in(service, sid="SM" + "f" * 32, sender=PHONE, to=NUMBER, body="SMILE")

    async def answered() -> bool:
        thread = await thread_of(service, ws, PHONE)
        return len(thread["agent_runs"]) == 3

    await wait_until(answered, what="the turn of the third text")
    await asyncio.sleep(0.2)
    assert len(twilio.messages) == 2
    assert await count_rows(db, "campaign_enrollments") == enrollments
    status, body = await call(
        service, "POST", "/v1/campaigns/SMILE/enroll", ws.api_key, json={"to": PHONE}
    )
    assert status == 409, body
    assert body["error"]["code"] == "contact_opted_out"
    assert await count_rows(db, "campaign_enrollments") == enrollments
    assert llm.requests == []


# The native API


async def test_enroll_by_api_is_retry_safe(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    campaign_id = await new_campaign(db, ws.id, DRIP)
    headers = {"Idempotency-Key": "enroll-1"}
    answers = []
    for _ in range(2):
        status, body, got = await service.request(
            "POST",
            "/v1/campaigns/Smile/enroll",
            json={"to": PHONE},
            auth=False,
            headers={"Authorization": f"Bearer {ws.api_key}", **headers},
        )
        assert status == 201, body
        answers.append((body, got.get("Idempotent-Replayed")))
    (first, replayed_first), (again, replayed) = answers
    assert (replayed_first, replayed) == (None, "true")
    assert again == first
    assert set(first) == {
        "enrollment_id",
        "campaign_id",
        "key",
        "conversation_id",
        "status",
        "steps",
    }
    assert (first["campaign_id"], first["key"], first["status"]) == (campaign_id, "SMILE", "active")
    assert [s["status"] for s in first["steps"]] == ["queued", "scheduled", "scheduled"]
    assert await count_rows(db, "campaign_enrollments") == 1
    await twilio.wait_for_messages(1)
    assert twilio.messages[0]["Body"] == "Welcome to Sunrise Dental!"

    status, body = await call(
        service, "POST", "/v1/campaigns/SMILE/enroll", ws.api_key, json={"to": "12"}
    )
    assert status == 422, body


async def test_another_workspaces_campaign_is_404(service: Service, db: Database) -> None:
    mine = await new_workspace(db, "Sunrise Dental", NUMBER)
    theirs = await new_workspace(db, "Other Dental", "+15550003333")
    campaign_id = await new_campaign(db, mine.id, seed_campaign(1, "one"))

    for path in (
        "/v1/campaigns/one",
        f"/v1/campaigns/{campaign_id}",
        f"/v1/campaigns/{campaign_id}.1",
    ):
        status, body = await inbox(service, theirs, "GET", path)
        assert status == 404, body
    status, body = await inbox(service, theirs, "POST", "/v1/campaigns/one/cancel", phone=PHONE)
    assert (status, body["status"], body["error"]["code"]) == (404, 404, "not_found")
    status, body = await inbox(service, theirs, "GET", "/v1/campaigns")
    assert (status, body["data"]["campaigns"]) == (200, [])
    for key in ("one", campaign_id):
        status, body = await call(
            service, "POST", f"/v1/campaigns/{key}/enroll", theirs.api_key, json={"to": PHONE}
        )
        assert status == 404, body
    assert await count_rows(db, "campaign_enrollments") == 0
    assert await count_rows(db, "messages") == 0


async def test_three_steps_cancelled_recursively_after_the_first(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    await new_campaign(db, ws.id, DRIP)
    status, enrolled = await call(
        service, "POST", "/v1/campaigns/smile/enroll", ws.api_key, json={"to": PHONE}
    )
    assert status == 201, enrolled
    await twilio.wait_for_messages(1)
    assert states(await thread_of(service, ws, PHONE)) == ["gone", "scheduled", "scheduled"]

    status, body = await inbox(
        service, ws, "POST", "/v1/campaigns/SMILE/cancel", phone=PHONE, recursive="1"
    )
    assert status == 200, body
    assert states(await thread_of(service, ws, PHONE)) == ["gone", "canceled", "canceled"]
    assert len(twilio.messages) == 1
