"""The inbox API's contacts and tags: the seed's requests as printed, searches in SQL on both
databases, paging, empty fields, removal that keeps conversations, other inboxes left alone,
and a landline that is never texted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from agent.workspaces import Credentials
from storage.engine import create_engine, create_session_factory
from storage.models import Conversation, Membership, User
from storage.types import new_id
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, wait_until
from tests.inbox import inbox
from tests.workspaces import call, new_workspace
from webhooks.avochato.contacts import ContactPageAnswer, ContactsAnswer, UpsertAnswer

NUMBER = "+15550002222"
# The keys of a contact in the seed's answers (custom variables come on top).
CONTACT_KEYS = {
    "id",
    "name",
    "phone",
    "email",
    "street",
    "city",
    "state",
    "zip",
    "country",
    "address",
    "notes",
    "company",
    "other_phone",
    "created_at",
    "tags",
    "tag_details",
    "opted_out",
    "double_opted_in",
    "muted",
    "blocked",
    "salesforce_object_type",
    "salesforce_object_id",
    "priority",
    "user_id",
    "visible",
    "current_owner",
    "due_for_compliance",
}
# "Update Multiple Contacts", as printed (credentials aside).
SEED_BULK: dict[str, Any] = {
    "contacts": [
        {
            "phone": "+14155553333",
            "name": "Bob McTest",
            "email": "contact@example.com",
            "company": "Example Inc.",
            "street": "123 Main St.",
            "city": "SF",
            "state": "CA",
            "zip": "99999",
            "country": "USA",
            "opted_out": False,
            "visible": True,
            "landline": False,
            "custom_variable_name": "value to set custom variable",
            "tags": "red,green,blue",
            "user_id": "teammate@example.com",
            "salesforce_object_id": "0030030000000014cAAA",
            "salesforce_object_type": "Contact",
        }
    ]
}
# "Update Single Contact", as printed (credentials aside).
SEED_SINGLE: dict[str, Any] = SEED_BULK["contacts"][0] | {"stuck_number": ""}
BOB = {
    "phone": "+15551234567",
    "name": "Bob McTest",
    "email": "bob@mctest.com",
    "city": "Los Angeles",
    "state": "CA",
    "zip": "99999",
    "country": "US",
    "company": "McTest Inc",
}
OTHER = {
    "phone": "+15551234568",
    "name": "Other Contact",
    "email": "bob@contact.com",
    "city": "San Francisco",
    "state": "CA",
    "zip": "88888",
    "country": "US",
    "company": "Contact Inc",
}


async def add_member(db: Database, workspace_id: str, email: str) -> str:
    """A team member of the workspace (the inbox's own users API aside)."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            user = User(id=new_id("usr"), email=email, name="Teammate", require_2fa=False)
            session.add(user)
            await session.flush()
            session.add(Membership(workspace_id=workspace_id, user_id=user.id))
        return user.id
    finally:
        await engine.dispose()


async def assignees(db: Database, contact_id: str) -> list[str | None]:
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with create_session_factory(engine)() as session:
            found = await session.exec(
                select(Conversation.assignee_user_id).where(Conversation.contact_id == contact_id)
            )
            return list(found.all())
    finally:
        await engine.dispose()


async def upsert(service: Service, ws: Credentials, *people: dict[str, Any], **extra: Any) -> Any:
    status, body = await inbox(service, ws, "POST", "/v1/contacts", contacts=list(people), **extra)
    assert status == 200, body
    UpsertAnswer.model_validate(body)
    return body["data"]


async def search(service: Service, ws: Credentials, **query: Any) -> Any:
    status, body = await inbox(service, ws, "GET", "/v1/contacts", **query)
    assert status == 200, body
    ContactPageAnswer.model_validate(body)
    return body


async def names(service: Service, ws: Credentials, query: str, **more: Any) -> list[str]:
    body = await search(service, ws, query=query, **more)
    return sorted(c["name"] for c in body["data"]["contacts"])


def invalid(status: int, body: Any) -> set[str]:
    """The fields a 422 in the envelope names."""
    assert status == 422, body
    assert body["status"] == 422
    assert body["error"]["code"] == "validation_error"
    return {d["field"] for d in body["error"]["details"]}


async def test_the_seeds_update_requests_as_printed(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    teammate = await add_member(db, ws.id, "teammate@example.com")

    status, body = await inbox(service, ws, "POST", "/v1/contacts", **SEED_BULK)

    assert status == 200, body
    assert set(body) == {"status", "data"}
    assert set(body["data"]) == {"contact"}
    contact = body["data"]["contact"]
    assert set(contact) == CONTACT_KEYS | {"custom_variable_name"}
    assert contact["id"].startswith("ct_")
    assert {k: v for k, v in contact.items() if k not in ("id", "created_at")} == {
        "name": "Bob McTest",
        "phone": "+14155553333",
        "email": "contact@example.com",
        "street": "123 Main St.",
        "city": "SF",
        "state": "CA",
        "zip": "99999",
        "country": "USA",
        "address": "123 Main St., SF, CA, 99999, USA",
        "notes": None,
        "company": "Example Inc.",
        "other_phone": None,
        "tags": ["red", "green", "blue"],
        "tag_details": [
            {"name": tag, "color": None, "duration": None, "routable": False}
            for tag in ("red", "green", "blue")
        ],
        "opted_out": False,
        "double_opted_in": False,
        "muted": False,
        "blocked": False,
        "salesforce_object_type": "Contact",
        "salesforce_object_id": "0030030000000014cAAA",
        "priority": 0,
        "user_id": teammate,
        "visible": True,
        "current_owner": teammate,
        "due_for_compliance": True,
        "custom_variable_name": "value to set custom variable",
    }
    assert isinstance(contact["created_at"], float)

    # The single form updates the same contact (by phone); its empty stuck number is ignored.
    status, body = await inbox(
        service, ws, "POST", "/v1/contacts", **SEED_SINGLE | {"company": "Example LLC"}
    )
    assert status == 200, body
    assert set(body["data"]) == {"contact"}
    again = body["data"]["contact"]
    assert again["id"] == contact["id"]
    assert again["company"] == "Example LLC"
    assert again["user_id"] == teammate
    assert again["tags"] == ["red", "green", "blue"]

    # A form body, Rails-style keys.
    status, body = await inbox(
        service,
        ws,
        "POST",
        "/v1/contacts",
        via="form",
        **{
            "contacts[0][phone]": "(415) 555-4444",
            "contacts[0][name]": "Ann Lee Smith",
            "contacts[0][priority]": "3",
            "contacts[0][muted]": "1",
            "contacts[1][phone]": "415.555.5555",
            "contacts[1][name]": "Cher",
        },
    )
    assert status == 200, body
    ann, cher = body["data"]["contacts"]
    assert body["data"]["contact"] == cher
    assert (ann["phone"], ann["name"], ann["priority"], ann["muted"]) == (
        "+14155554444",
        "Ann Lee Smith",
        3,
        True,
    )
    assert (cher["phone"], cher["name"]) == ("+14155555555", "Cher")


async def test_fetch_and_list_as_the_seed_prints_them(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    bob = (await upsert(service, ws, BOB))["contact"]
    # Ids sort by their millisecond of creation.
    await asyncio.sleep(0.005)
    other = (await upsert(service, ws, OTHER))["contact"]
    await inbox(service, ws, "POST", f"/v1/contacts/{bob['id']}/tags", tag="important")

    status, body = await inbox(
        service, ws, "GET", f"/v1/contacts/{bob['id']}%2C{other['id']}", page=1
    )

    assert status == 200, body
    ContactsAnswer.model_validate(body)
    assert set(body) == {"status", "data", "page"}
    assert (body["status"], body["page"], set(body["data"])) == (200, 1, {"contacts"})
    first, second = body["data"]["contacts"]
    assert set(first) == set(second) == CONTACT_KEYS
    assert (first["id"], second["id"]) == (bob["id"], other["id"])
    assert first["address"] == "Los Angeles, CA, 99999, US"
    assert first["tags"] == ["important"]
    assert first["tag_details"] == [
        {"name": "important", "color": None, "duration": None, "routable": False}
    ]
    assert second["address"] == "San Francisco, CA, 88888, US"
    assert (second["street"], second["notes"], second["user_id"]) == (None, None, None)

    listed = await search(service, ws)
    assert set(listed) == {"status", "data", "page", "limit"}
    assert (listed["page"], listed["limit"]) == (1, 30)
    assert set(listed["data"]) == {"contacts", "size", "next_page"}
    assert listed["data"]["size"] == 2
    assert listed["data"]["next_page"] is None
    assert [c["id"] for c in listed["data"]["contacts"]] == [bob["id"], other["id"]]
    assert listed["data"]["contacts"][1] == second

    # "Paginate contact results": the cursor is echoed, without a page.
    paged = await search(service, ws, query="country:US", after_page=bob["id"])
    assert set(paged) == {"status", "data", "limit", "after_page"}
    assert paged["after_page"] == bob["id"]
    assert [c["id"] for c in paged["data"]["contacts"]] == [other["id"]]
    assert (paged["data"]["size"], paged["data"]["next_page"]) == (1, None)


async def test_searches_are_sql_on_columns_and_json(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    bob = (await upsert(service, ws, BOB))["contact"]
    await asyncio.sleep(0.02)
    other = (await upsert(service, ws, OTHER))["contact"]
    await upsert(
        service,
        ws,
        {
            "phone": "+15551234569",
            "name": "Carol Q. Public",
            "email": "carol@example.com",
            "city": "New York",
            "country": "USA",
            "priority": 5,
            "muted": True,
            "tags": "vip, red",
            "plan": "Gold Member",
            "notes": "Prefers mornings",
        },
    )

    # The seed's search: by name or city, within the creation window it gives.
    window = {
        "created_at[from]": str(bob["created_at"] - 1),
        "created_at[to]": str(bob["created_at"] + 0.005),
    }
    seed = await search(service, ws, query='name:Bob OR city:"San Francisco"', **window)
    assert set(seed) == {"status", "data", "page", "limit"}
    assert [c["id"] for c in seed["data"]["contacts"]] == [bob["id"]]
    assert await names(service, ws, 'name:Bob OR city:"San Francisco"') == [
        "Bob McTest",
        "Other Contact",
    ]
    since = {"created_at[from]": str(other["created_at"] - 0.001)}
    assert "Bob McTest" not in await names(service, ws, "*", **since)

    assert await names(service, ws, "country:US") == ["Bob McTest", "Other Contact"]
    assert await names(service, ws, "country:USA") == ["Carol Q. Public"]
    assert await names(service, ws, "country:us city:ang") == []
    assert await names(service, ws, 'country:us city:"los angeles"') == ["Bob McTest"]
    assert await names(service, ws, "name:bo*") == ["Bob McTest"]
    assert await names(service, ws, "mctest") == ["Bob McTest"]
    assert await names(service, ws, '"gold mem"') == ["Carol Q. Public"]
    assert await names(service, ws, "plan:gold") == ["Carol Q. Public"]
    assert await names(service, ws, "email:bob@contact.com") == ["Other Contact"]
    assert await names(service, ws, "phone:555-123-4568") == ["Other Contact"]
    assert await names(service, ws, 'phone:"(555) 123-4568"') == ["Other Contact"]
    assert await names(service, ws, "1234567") == ["Bob McTest"]
    assert await names(service, ws, "tag:VIP") == ["Carol Q. Public"]
    assert await names(service, ws, "-tags:vip") == ["Bob McTest", "Other Contact"]
    assert await names(service, ws, "NOT tags:red AND state:CA") == [
        "Bob McTest",
        "Other Contact",
    ]
    assert await names(service, ws, "(city:SF OR muted:true) OR zip:99999") == [
        "Bob McTest",
        "Carol Q. Public",
    ]
    assert await names(service, ws, "priority:5") == ["Carol Q. Public"]
    assert await names(service, ws, "priority:0 muted:false") == ["Bob McTest", "Other Contact"]
    assert await names(service, ws, "notes:mornings company:contact") == []

    # A conversation's status: only Bob has one, open.
    status, started = await call(
        service, "POST", "/v1/conversations", ws.api_key, json={"to": BOB["phone"], "message": "Hi"}
    )
    assert status == 201, started
    assert await names(service, ws, "status:Open") == ["Bob McTest"]
    assert await names(service, ws, "status:closed") == []

    for bad in ("status:Sleeping", "name:", "(city:SF", "city:SF)", "priority:9", "muted:maybe"):
        status, body = await inbox(service, ws, "GET", "/v1/contacts", query=bad)
        assert invalid(status, body) == {"query"}, bad


async def test_pages_follow_next_page_to_the_end(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    people = [{"phone": f"+1555123450{i}", "name": f"Person {i}"} for i in range(7)]
    written = (await upsert(service, ws, *people))["contacts"]
    # Ids sort by creation time; those made within one millisecond, at random.
    ids = sorted(c["id"] for c in written)

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await search(service, ws, limit=3, **({"after_page": cursor} if cursor else {}))
        assert page["limit"] == 3
        seen += [c["id"] for c in page["data"]["contacts"]]
        cursor = page["data"]["next_page"]
        if cursor is None:
            break
    assert seen == ids
    second = await search(service, ws, limit=3, page=2)
    assert [c["id"] for c in second["data"]["contacts"]] == ids[3:6]

    # A Unix time in milliseconds, as the list's documentation gives it: contacts created after.
    await asyncio.sleep(0.01)
    late = (await upsert(service, ws, {"phone": "+15551234599", "name": "Late"}))["contact"]
    after = str(int(written[0]["created_at"] * 1000) + 2)
    later = await search(service, ws, after_page=after)
    assert [c["id"] for c in later["data"]["contacts"]] == [late["id"]]

    for bad in ({"limit": 101}, {"after_page": "not a cursor!"}, {"created_at": "yesterday"}):
        status, body = await inbox(service, ws, "GET", "/v1/contacts", **bad)
        assert invalid(status, body) == {next(iter(bad))}, bad


async def test_empty_fields_clear_only_when_allowed(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    full = {**BOB, "plan": "Gold", "notes": "Likes mornings"}
    first = (await upsert(service, ws, full))["contact"]

    blanks = {"phone": BOB["phone"], "email": "", "city": None, "plan": "", "name": ""}
    kept = (await upsert(service, ws, blanks))["contact"]
    assert {k: kept[k] for k in ("email", "city", "plan", "name", "notes")} == {
        "email": "bob@mctest.com",
        "city": "Los Angeles",
        "plan": "Gold",
        "name": "Bob McTest",
        "notes": "Likes mornings",
    }

    cleared = (await upsert(service, ws, blanks, allow_empty_fields="1"))["contact"]
    assert cleared["id"] == first["id"]
    assert {k: cleared[k] for k in ("email", "city", "plan", "name", "notes")} == {
        "email": None,
        "city": None,
        "plan": "",
        "name": None,
        "notes": "Likes mornings",
    }
    assert cleared["address"] == "CA, 99999, US"


async def test_removing_contacts_keeps_their_conversations(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    bob, other = (await upsert(service, ws, BOB, OTHER))["contacts"]
    status, started = await call(
        service, "POST", "/v1/conversations", ws.api_key, json={"to": BOB["phone"], "message": "Hi"}
    )
    assert status == 201, started

    status, body = await inbox(
        service, ws, "DELETE", "/v1/contacts/remove_all", via="json", query="city:SF OR name:bob"
    )
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {"account": "sunrise-dental", "query": "city:SF OR name:bob"},
    }
    listed = await search(service, ws)
    assert [c["id"] for c in listed["data"]["contacts"]] == [other["id"]]

    # The seed's request: no query removes everyone.
    status, body = await inbox(
        service, ws, "DELETE", "/v1/contacts/remove_all", via="json", query=None
    )
    assert status == 200, body
    assert body["data"] == {"account": "sunrise-dental", "query": "*"}
    assert (await search(service, ws))["data"]["contacts"] == []
    hidden = await search(service, ws, visible="false")
    assert sorted((c["id"], c["visible"]) for c in hidden["data"]["contacts"]) == sorted(
        [(bob["id"], False), (other["id"], False)]
    )

    # The thread and its text are all still there, and the contact by id.
    status, thread = await call(
        service, "GET", f"/v1/conversations/{started['conversation_id']}", ws.api_key
    )
    assert status == 200, thread
    assert [m["body"] for m in thread["messages"]] == ["Hi"]
    status, fetched = await inbox(service, ws, "GET", f"/v1/contacts/{bob['id']}")
    assert status == 200, fetched
    assert fetched["data"]["contacts"][0]["visible"] is False

    # Written again, a contact is back; `visible=0` removes one the same way.
    back = (await upsert(service, ws, {"phone": BOB["phone"], "company": "Back Inc"}))["contact"]
    assert back["visible"] is True
    gone = (await upsert(service, ws, {"phone": BOB["phone"], "visible": "0"}))["contact"]
    assert gone["visible"] is False
    assert (await search(service, ws))["data"]["contacts"] == []


async def test_tags_on_contacts_by_id_and_phone(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    them = await new_workspace(db, "Other Dental", "+15550003333")
    bob, other = (await upsert(service, ws, BOB, OTHER))["contacts"]
    theirs = (await upsert(service, them, BOB))["contact"]

    status, body = await inbox(
        service, ws, "POST", f"/v1/contacts/{bob['id']}%2C{other['id']}/tags", tag="my-old-tag"
    )
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {"action": "tagged", "tag": "my-old-tag", "ids": [bob["id"], other["id"]]},
    }
    # The seed's by-phone request; another inbox's id in the list is left out, untouched.
    status, body = await inbox(
        service, ws, "POST", "/v1/tags", phone="+15551234567", tag="my-new-tag"
    )
    assert status == 200, body
    assert body["data"] == {"action": "tagged", "tag": "my-new-tag", "ids": [bob["id"]]}
    status, body = await inbox(
        service, ws, "POST", f"/v1/contacts/{theirs['id']},{other['id']}/tags", tag="my-new-tag"
    )
    assert status == 200, body
    assert body["data"]["ids"] == [other["id"]]

    status, body = await inbox(service, ws, "GET", "/v1/tags", page=1)
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {
            "tags": [{"name": "my-old-tag"}, {"name": "my-new-tag"}],
            "last_key": "my-new-tag",
        },
        "limit": 30,
    }

    status, body = await inbox(
        service,
        ws,
        "DELETE",
        f"/v1/contacts/{bob['id']}%2C{other['id']}/tags",
        via="json",
        tag="my-old-tag",
    )
    assert status == 200, body
    assert body["data"] == {
        "action": "untagged",
        "tag": "my-old-tag",
        "ids": [bob["id"], other["id"]],
    }
    status, body = await inbox(
        service, ws, "DELETE", "/v1/tags", via="json", phone="+15551234567", tag="my-new-tag"
    )
    assert status == 200, body
    assert body["data"] == {"action": "untagged", "tag": "my-new-tag", "ids": [bob["id"]]}

    status, body = await inbox(service, ws, "GET", f"/v1/contacts/{bob['id']},{other['id']}")
    assert [c["tags"] for c in body["data"]["contacts"]] == [[], ["my-new-tag"]]
    # Untagging leaves the inbox's tags as they were.
    status, body = await inbox(service, ws, "GET", "/v1/tags")
    assert [t["name"] for t in body["data"]["tags"]] == ["my-old-tag", "my-new-tag"]

    # Only another inbox's contacts, or no contact with the phone: 404, nothing changed.
    status, body = await inbox(service, ws, "POST", f"/v1/contacts/{theirs['id']}/tags", tag="x")
    assert (status, body["status"], body["error"]["code"]) == (404, 404, "not_found")
    status, body = await inbox(service, ws, "POST", "/v1/tags", phone="+15559990000", tag="x")
    assert status == 404, body
    status, body = await inbox(service, them, "GET", f"/v1/contacts/{theirs['id']}")
    assert body["data"]["contacts"][0]["tags"] == []
    status, body = await inbox(service, them, "GET", "/v1/tags")
    assert body["data"] == {"tags": [], "last_key": None}

    for tag in ("", "a,b", "x" * 101):
        status, body = await inbox(service, ws, "POST", f"/v1/contacts/{bob['id']}/tags", tag=tag)
        assert invalid(status, body) == {"tag"}, tag
    status, body = await inbox(service, ws, "POST", "/v1/tags", phone="not a phone", tag="x")
    assert invalid(status, body) == {"phone"}


async def test_another_inboxs_contacts_are_never_seen_or_changed(
    service: Service, db: Database
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    them = await new_workspace(db, "Other Dental", "+15550003333")
    mine = (await upsert(service, ws, BOB))["contact"]
    theirs = (await upsert(service, them, {**BOB, "name": "Their Bob"}))["contact"]
    assert theirs["id"] != mine["id"]

    status, body = await inbox(service, ws, "GET", f"/v1/contacts/{theirs['id']}")
    assert (status, body["status"], body["error"]["code"]) == (404, 404, "not_found")
    status, body = await inbox(service, ws, "GET", f"/v1/contacts/{theirs['id']},{mine['id']}")
    assert [c["id"] for c in body["data"]["contacts"]] == [mine["id"]]
    assert [c["id"] for c in (await search(service, ws))["data"]["contacts"]] == [mine["id"]]
    assert await names(service, ws, f"id:{theirs['id']}") == []

    status, _ = await inbox(service, ws, "DELETE", "/v1/contacts/remove_all")
    assert status == 200
    status, body = await inbox(service, them, "GET", f"/v1/contacts/{theirs['id']}")
    assert body["data"]["contacts"][0]["name"] == "Their Bob"
    assert body["data"]["contacts"][0]["visible"] is True


async def test_bad_contacts_are_422_naming_the_field_and_write_nothing(
    service: Service, db: Database
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    them = await new_workspace(db, "Other Dental", "+15550003333")
    await add_member(db, them.id, "outsider@example.com")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"phone": "not a phone"}, "contacts.1.phone"),
        ({"phone": "+15551230000", "priority": 9}, "contacts.1.priority"),
        ({"phone": "+15551230000", "email": "nope"}, "contacts.1.email"),
        ({"phone": "+15551230000", "muted": "sometimes"}, "contacts.1.muted"),
        ({"phone": "+15551230000", "plan": {"nested": 1}}, "contacts.1.plan"),
        ({"phone": "+15551230000", "created_at": 5}, "contacts.1.created_at"),
        ({"phone": "+15551230000", "user_id": "outsider@example.com"}, "contacts.1.user_id"),
        ({"phone": "+15551230000", "stuck_number": "+15550003333"}, "contacts.1.stuck_number"),
        ({"phone": "+15551230000", "tags": "ok," + "x" * 101}, "contacts.1.tags"),
        ({"name": "No Phone"}, "contacts.1.phone"),
    ]
    for person, field in cases:
        status, body = await inbox(service, ws, "POST", "/v1/contacts", contacts=[OTHER, person])
        assert field in invalid(status, body), (person, body)
    status, body = await inbox(service, ws, "POST", "/v1/contacts", name="Nobody")
    assert invalid(status, body) == {"contacts"}
    status, body = await inbox(service, ws, "POST", "/v1/contacts", phone="+15551230000", zip=[1])
    assert invalid(status, body) == {"zip"}
    assert (await search(service, ws, visible="false"))["data"]["contacts"] == []

    # A number of the inbox sticks.
    stuck = (await upsert(service, ws, {**BOB, "stuck_number": "(555) 000-2222"}))["contact"]
    assert set(stuck) == CONTACT_KEYS
    assert await names(service, ws, "stuck_number:+15550002222") == ["Bob McTest"]


async def test_owners_opt_outs_and_landlines_reach_the_send_path(
    service: Service, db: Database, twilio: TwilioStub
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", NUMBER)
    teammate = await add_member(db, ws.id, "teammate@example.com")
    line, blocked, bob = (
        await upsert(
            service,
            ws,
            {"phone": "+15551112222", "name": "Front Desk", "landline": "1"},
            {"phone": "+15551113333", "blocked": "true"},
            {**BOB},
        )
    )["contacts"]

    # A landline is refused up front...
    status, refused = await call(
        service,
        "POST",
        "/v1/conversations",
        ws.api_key,
        json={"to": "(555) 111-2222", "message": "Your visit is tomorrow."},
    )
    assert status == 409, refused
    assert refused["error"]["code"] == "contact_landline"
    # ...and a text already waiting when the number is marked a landline is never sent.
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, started = await call(
        service,
        "POST",
        "/v1/messages",
        ws.api_key,
        json={"to": "+15551114444", "message": "Your visit is tomorrow.", "send_at": soon},
    )
    assert status == 201, started
    await upsert(service, ws, {"phone": "+15551114444", "landline": "1"})
    message_path = f"/v1/messages/{started['message_id']}"

    async def settled() -> bool:
        status, message = await call(service, "GET", message_path, ws.api_key)
        assert status == 200, message
        return bool(message["status"] == "canceled")

    await wait_until(settled, what="the text to the landline is canceled")
    _, message = await call(service, "GET", message_path, ws.api_key)
    assert message["error_code"] == "contact_landline"
    status, refused = await call(
        service,
        "POST",
        "/v1/conversations",
        ws.api_key,
        json={"to": blocked["phone"], "message": "Hi"},
    )
    assert status == 409, refused

    # A text that reaches Bob: due for compliance no longer; an owner takes his threads.
    status, sent = await call(
        service, "POST", "/v1/conversations", ws.api_key, json={"to": BOB["phone"], "message": "Hi"}
    )
    assert status == 201, sent
    await twilio.wait_for_messages(1)
    assert [m["To"] for m in twilio.messages] == [BOB["phone"]]

    async def taken() -> bool:
        _, message = await call(service, "GET", f"/v1/messages/{sent['message_id']}", ws.api_key)
        return bool(message["status"] == "sent")

    await wait_until(taken, what="the provider's answer stored")
    assert bob["due_for_compliance"] is True
    owned = (await upsert(service, ws, {"phone": BOB["phone"], "user_id": teammate}))["contact"]
    assert owned["due_for_compliance"] is False
    assert (owned["user_id"], owned["current_owner"]) == (teammate, teammate)
    assert await assignees(db, bob["id"]) == [teammate]
    assert line["id"] != bob["id"]
