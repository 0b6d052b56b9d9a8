"""The inbox API's accounts, whoami and users: the seed's examples, the shapes it documents, who
may change the team, and that another inbox's people stay out of reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.workspaces import Credentials
from storage.engine import create_engine, create_session_factory
from storage.models import Conversation, User
from tests.conftest import ServiceFactory
from tests.harness import Database, Service
from tests.inbox import inbox
from tests.test_kickoff import KICKOFF
from tests.workspaces import call, new_workspace

ACCOUNT = {"id", "subdomain", "name", "phone", "created_at", "tcr_campaign_id"}
USER_ACCOUNT = {"id", "subdomain", "name", "phone", "created_at"}
USER = {
    "email",
    "id",
    "name",
    "image_url",
    "signed_in_at",
    "avobot_id",
    "phone",
    "phone_formatted",
    "created_at",
    "require_2fa",
    "mfa_app_valid",
    "phone_valid",
}
MEMBER = USER | {
    "role",
    "enabled",
    "can_message",
    "can_call",
    "can_view_billing",
    "can_view_org",
    "added_at",
}
SARAH: dict[str, Any] = {
    "email": "newuser@sunrisedental.com",
    "role": "member",
    "name": "Sarah Johnson",
}


@pytest.fixture
async def service(make_service: ServiceFactory) -> Service:
    # A test here sends more requests on one pair of credentials than the default burst allows.
    return await make_service(api_rate_per_second=10_000, api_rate_burst=10_000)


@asynccontextmanager
async def stored(db: Database) -> AsyncIterator[AsyncSession]:
    """The service's database, to see what a request left behind or to set what no route
    sets."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


def user_of(body: Any, keys: set[str] = MEMBER) -> dict[str, Any]:
    """The user of a successful answer, checked to have exactly the documented fields."""
    assert body["status"] == 200, body
    assert set(body) == {"status", "data"}
    assert set(body["data"]) == {"user"}
    user: dict[str, Any] = body["data"]["user"]
    assert set(user) == keys
    return user


def refused(status: int, body: Any, expected: int, code: str) -> None:
    assert status == expected, body
    assert set(body) == {"status", "error"}
    assert body["status"] == expected
    assert body["error"]["code"] == code


async def me(service: Service, creds: Credentials) -> dict[str, Any]:
    status, body = await inbox(service, creds, "GET", "/v1/whoami")
    assert status == 200, body
    user: dict[str, Any] = body["data"]["user"]
    return user


async def added(
    service: Service, creds: Credentials | tuple[str, str], **params: Any
) -> dict[str, Any]:
    status, body = await inbox(service, creds, "POST", "/v1/users", **params)
    assert status == 200, body
    return user_of(body)


async def test_whoami_names_the_inbox_and_the_user(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")

    status, body = await inbox(service, ws, "GET", "/v1/whoami")

    assert status == 200, body
    assert set(body) == {"status", "data"}
    assert body["status"] == 200
    data = body["data"]
    assert set(data) == {"account", "user", "origin", "created_at"}
    assert set(data["account"]) == ACCOUNT
    assert data["account"]["id"] == ws.id
    assert data["account"]["subdomain"] == "sunrise-dental"
    assert data["account"]["name"] == "Sunrise Dental"
    assert data["account"]["phone"] == "+15550002222"
    assert data["account"]["tcr_campaign_id"] is None
    assert isinstance(data["account"]["created_at"], float)
    assert set(data["user"]) == USER
    assert data["user"]["email"] == f"owner+{ws.id}@smsagent.invalid"
    assert data["user"]["image_url"] is data["user"]["avobot_id"] is None
    assert data["user"]["mfa_app_valid"] is data["user"]["phone_valid"] is False
    assert data["origin"] == "api"
    # In the inbox's zone (Denver: -06:00 or -07:00), with milliseconds.
    offset = datetime.fromisoformat(data["created_at"]).utcoffset()
    assert offset is not None
    assert offset.total_seconds() in (-6 * 3600, -7 * 3600)
    assert len(data["created_at"].split(".")[1]) == len("252-07:00")


async def test_wrong_or_missing_credentials_are_401(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    owner = await me(service, ws)
    wrong = (ws.avochato_auth_id, "not-the-secret")
    for method, path in (
        ("GET", "/v1/whoami"),
        ("GET", "/v1/accounts"),
        ("GET", "/v1/accounts/sunrise-dental"),
        ("GET", "/v1/users"),
        ("GET", f"/v1/users/{owner['id']}"),
        ("GET", f"/v1/users/{owner['id']}/accounts"),
        ("POST", "/v1/users"),
        ("PUT", f"/v1/users/{owner['id']}"),
        ("DELETE", f"/v1/users/{owner['id']}"),
        ("POST", f"/v1/users/{owner['id']}/disable"),
        ("POST", f"/v1/users/{owner['id']}/enable"),
        ("POST", f"/v1/users/{owner['id']}/mfa_phone"),
        ("POST", f"/v1/users/{owner['id']}/password_reset"),
    ):
        status, body = await inbox(service, wrong, method, path, **SARAH)
        refused(status, body, 401, "unauthorized")
    status, body, _ = await service.request("GET", "/compat/avochato/v1/whoami", auth=False)
    refused(status, body, 401, "unauthorized")
    # Nothing was changed by the refused requests.
    status, body = await inbox(service, ws, "GET", "/v1/users")
    assert [u["id"] for u in body["data"]["users"]] == [owner["id"]]


async def test_the_seed_user_examples(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")

    # Add a User, as the seed posts it.
    status, body = await inbox(service, ws, "POST", "/v1/users", via="json", **SARAH)
    sarah = user_of(body)
    assert status == 200
    assert sarah["email"] == "newuser@sunrisedental.com"
    assert sarah["name"] == "Sarah Johnson"
    assert sarah["role"] == "member"
    assert sarah["enabled"] is True
    assert sarah["require_2fa"] is True
    assert sarah["can_message"] is True
    assert sarah["can_view_billing"] is sarah["can_view_org"] is False
    assert sarah["phone"] is sarah["phone_formatted"] is sarah["signed_in_at"] is None
    assert isinstance(sarah["created_at"], float)
    assert isinstance(sarah["added_at"], float)
    sid = sarah["id"]

    # List all Users.
    status, body = await inbox(service, ws, "GET", "/v1/users", page=1)
    assert status == 200
    assert set(body) == {"status", "data", "page"}
    assert body["page"] == 1
    assert set(body["data"]) == {"users"}
    users = body["data"]["users"]
    assert [u["email"] for u in users] == [f"owner+{ws.id}@smsagent.invalid", SARAH["email"]]
    assert all(set(u) == USER for u in users)

    # Get User Details: by id, by email in the path, by the email parameter.
    lookups: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/users/{sid}", {}),
        ("/v1/users/NewUser@SunriseDental.com", {}),
        ("/v1/users/someone", {"email": SARAH["email"]}),
    ]
    for path, params in lookups:
        status, body = await inbox(service, ws, "GET", path, **params)
        assert user_of(body) == sarah, path

    # Update a User role.
    status, body = await inbox(service, ws, "PUT", f"/v1/users/{sid}", role="manager")
    assert user_of(body)["role"] == "manager"

    # Disable, then Re-enable.
    status, body = await inbox(service, ws, "POST", f"/v1/users/{sid}/disable")
    assert user_of(body)["enabled"] is False
    status, body = await inbox(service, ws, "GET", f"/v1/users/{sid}")
    assert user_of(body)["enabled"] is False
    status, body = await inbox(service, ws, "POST", f"/v1/users/{sid}/enable")
    assert user_of(body)["enabled"] is True

    # Set MFA Phone Number (the seed's body carries `private` too).
    status, body = await inbox(
        service, ws, "POST", f"/v1/users/{sid}/mfa_phone", phone="+14155559876", private=True
    )
    assert status == 200, body
    assert set(body["data"]) == {"message", "user"}
    assert body["data"]["message"] == (
        "MFA phone number has been set. User must verify via SMS code."
    )
    assert set(body["data"]["user"]) == MEMBER
    # Pending until verified: the user's phone is not it yet.
    assert body["data"]["user"]["phone"] is None
    assert body["data"]["user"]["phone_valid"] is False

    # Trigger a Password Reset.
    status, body = await inbox(service, ws, "POST", f"/v1/users/{sid}/password_reset")
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {"message": "Password reset email sent to newuser@sunrisedental.com"},
    }

    # List User Inboxes.
    status, body = await inbox(service, ws, "GET", f"/v1/users/{sid}/accounts")
    assert status == 200, body
    assert set(body) == {"status", "data"}
    [account] = body["data"]["accounts"]
    assert set(account) == USER_ACCOUNT
    assert account["subdomain"] == "sunrise-dental"
    assert account["phone"] == "+15550002222"

    async with stored(db) as session:
        user = await session.get(User, sid)
        assert user is not None
        kinds = [(r["kind"], r.get("phone"), r["workspace_id"]) for r in user.requests]
        assert kinds == [("mfa_phone", "+14155559876", ws.id), ("password_reset", None, ws.id)]
        assert all(datetime.fromisoformat(r["at"]).tzinfo for r in user.requests)

    # Delete a User, with the seed's JSON body.
    status, body = await inbox(service, ws, "DELETE", f"/v1/users/{sid}", via="json")
    assert status == 200, body
    assert body == {
        "status": 200,
        "data": {"message": "newuser@sunrisedental.com has been removed from this account."},
    }
    status, body = await inbox(service, ws, "GET", f"/v1/users/{sid}")
    refused(status, body, 404, "not_found")


async def test_parameters_come_as_a_form_or_in_the_query_too(
    service: Service, db: Database
) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")

    by_form = await added(service, ws, via="form", email="ana@sunrisedental.com", role="manager")
    by_query = await added(service, ws, via="query", email="bo@sunrisedental.com", name="Bo")

    assert (by_form["email"], by_form["role"], by_form["name"]) == (
        "ana@sunrisedental.com",
        "manager",
        None,
    )
    assert (by_query["email"], by_query["role"], by_query["name"]) == (
        "bo@sunrisedental.com",
        "member",
        "Bo",
    )
    status, body = await inbox(
        service, ws, "POST", f"/v1/users/{by_query['id']}/disable", via="form"
    )
    assert user_of(body)["enabled"] is False
    status, body = await inbox(service, ws, "DELETE", "/v1/users/x", email="ana@sunrisedental.com")
    assert status == 200, body
    assert body["data"]["message"] == "ana@sunrisedental.com has been removed from this account."


async def test_a_phone_on_record_is_shown_formatted(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    sarah = await added(service, ws, **SARAH)
    async with stored(db) as session:
        user = await session.get(User, sarah["id"])
        assert user is not None
        user.phone = "+14155551234"

    _, body = await inbox(service, ws, "GET", f"/v1/users/{sarah['id']}")

    shown = user_of(body)
    assert (shown["phone"], shown["phone_formatted"]) == ("+14155551234", "(415) 555-1234")


async def test_accounts_and_switching_inboxes_by_subdomain(service: Service, db: Database) -> None:
    a = await new_workspace(db, "Sunrise Dental", "+15550002222")
    b = await new_workspace(db, "Other Dental", "+15550003333")
    owner_a, owner_b = await me(service, a), await me(service, b)

    # B's owner adds A's owner to B by their email: the same user, now in two inboxes.
    joined = await added(service, b, email=owner_a["email"], name="Not used")
    assert joined["id"] == owner_a["id"]
    assert joined["name"] == owner_a["name"]
    assert joined["role"] == "member"

    status, body = await inbox(service, a, "GET", "/v1/accounts", page=1)
    assert status == 200, body
    assert set(body) == {"status", "data", "page"}
    assert body["page"] == 1
    assert all(set(acct) == ACCOUNT for acct in body["data"]["accounts"])
    assert [acct["subdomain"] for acct in body["data"]["accounts"]] == [
        "sunrise-dental",
        "other-dental",
    ]
    assert [acct["phone"] for acct in body["data"]["accounts"]] == ["+15550002222", "+15550003333"]

    # Fetch Accounts, as the seed writes it: comma-separated subdomains, the comma encoded.
    status, body = await inbox(service, a, "GET", "/v1/accounts/other-dental%2Csunrise-dental")
    assert status == 200, body
    assert body["page"] == 1
    assert [acct["id"] for acct in body["data"]["accounts"]] == [a.id, b.id]
    # B's owner does not belong to A: A is left out, as one that does not exist.
    status, body = await inbox(service, b, "GET", "/v1/accounts/sunrise-dental,nowhere")
    assert status == 200, body
    assert body["data"]["accounts"] == []
    status, body = await inbox(service, b, "GET", "/v1/accounts")
    assert [acct["id"] for acct in body["data"]["accounts"]] == [b.id]

    # A's credentials act in B when they name it.
    status, body = await inbox(service, a, "GET", "/v1/whoami", subdomain="other-dental")
    assert status == 200, body
    assert body["data"]["account"]["id"] == b.id
    assert body["data"]["user"]["id"] == owner_a["id"]
    status, body = await inbox(service, a, "GET", "/v1/users", subdomain="other-dental")
    assert [u["id"] for u in body["data"]["users"]] == [owner_b["id"], owner_a["id"]]
    # ... with their role there (a member), not their role at home.
    status, body = await inbox(
        service, a, "POST", "/v1/users", subdomain="other-dental", email="x@example.com"
    )
    refused(status, body, 403, "forbidden")
    await added(service, a, email="x@example.com")

    # A user's inboxes are those the caller shares with them.
    status, body = await inbox(service, a, "GET", f"/v1/users/{owner_a['id']}/accounts")
    assert [acct["id"] for acct in body["data"]["accounts"]] == [a.id, b.id]
    assert all(set(acct) == USER_ACCOUNT for acct in body["data"]["accounts"])
    status, body = await inbox(service, b, "GET", f"/v1/users/{owner_a['id']}/accounts")
    assert [acct["id"] for acct in body["data"]["accounts"]] == [b.id]


async def test_another_inboxes_user_is_404(service: Service, db: Database) -> None:
    a = await new_workspace(db, "Sunrise Dental", "+15550002222")
    b = await new_workspace(db, "Other Dental", "+15550003333")
    owner_a = await me(service, a)
    sarah = await added(service, a, **SARAH)

    for key in (owner_a["id"], owner_a["email"], sarah["id"], sarah["email"], "usr_nobody"):
        for method, path, params in (
            ("GET", f"/v1/users/{key}", {}),
            ("GET", f"/v1/users/{key}/accounts", {}),
            ("GET", "/v1/users/x", {"email": key}),
            ("PUT", f"/v1/users/{key}", {"role": "manager"}),
            ("DELETE", f"/v1/users/{key}", {}),
            ("POST", f"/v1/users/{key}/disable", {}),
            ("POST", f"/v1/users/{key}/enable", {}),
            ("POST", f"/v1/users/{key}/mfa_phone", {"phone": "+14155559876"}),
            ("POST", f"/v1/users/{key}/password_reset", {}),
        ):
            status, body = await inbox(service, b, method, path, **params)
            refused(status, body, 404, "not_found")
            assert "data" not in body

    # A's team is as it was.
    status, body = await inbox(service, a, "GET", f"/v1/users/{sarah['id']}")
    assert user_of(body) == sarah
    async with stored(db) as session:
        user = await session.get(User, sarah["id"])
        assert user is not None
        assert user.requests == []


async def test_a_disabled_member_is_locked_out_of_that_inbox_only(
    service: Service, db: Database
) -> None:
    a = await new_workspace(db, "Sunrise Dental", "+15550002222")
    b = await new_workspace(db, "Other Dental", "+15550003333")
    owner_a = await me(service, a)
    await added(service, b, email=owner_a["email"])

    status, body = await inbox(service, b, "POST", f"/v1/users/{owner_a['id']}/disable")
    assert user_of(body)["enabled"] is False

    status, body = await inbox(service, a, "GET", "/v1/whoami", subdomain="other-dental")
    refused(status, body, 401, "unauthorized")
    status, body = await inbox(service, a, "GET", "/v1/users", subdomain="other-dental")
    refused(status, body, 401, "unauthorized")
    status, body = await inbox(service, a, "GET", "/v1/whoami")
    assert status == 200, body
    status, body = await inbox(service, a, "GET", "/v1/accounts")
    assert [acct["id"] for acct in body["data"]["accounts"]] == [a.id]

    status, body = await inbox(service, b, "POST", f"/v1/users/{owner_a['id']}/enable")
    assert user_of(body)["enabled"] is True
    status, body = await inbox(service, a, "GET", "/v1/whoami", subdomain="other-dental")
    assert status == 200, body


async def test_removing_a_user_unassigns_their_tickets_in_that_inbox(
    service: Service, db: Database
) -> None:
    a = await new_workspace(db, "Sunrise Dental", "+15550002222")
    b = await new_workspace(db, "Other Dental", "+15550003333")
    owner_a = await me(service, a)
    await added(service, b, email=owner_a["email"], role="manager")
    threads = {}
    for ws in (a, b):
        status, started = await call(service, "POST", "/v1/conversations", ws.api_key, json=KICKOFF)
        assert status == 201, started
        threads[ws.id] = started["conversation_id"]
    async with stored(db) as session:
        for conversation_id in threads.values():
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            conversation.assignee_user_id = owner_a["id"]

    status, body = await inbox(service, b, "DELETE", f"/v1/users/{owner_a['id']}")

    assert status == 200, body
    async with stored(db) as session:
        in_b = await session.get(Conversation, threads[b.id])
        in_a = await session.get(Conversation, threads[a.id])
        assert in_b is not None
        assert in_a is not None
        assert in_b.assignee_user_id is None
        assert in_a.assignee_user_id == owner_a["id"]
    # Gone from B (their credentials no longer reach it), still at home in A.
    status, body = await inbox(service, a, "GET", "/v1/whoami", subdomain="other-dental")
    refused(status, body, 401, "unauthorized")
    status, body = await inbox(service, b, "GET", "/v1/users")
    assert owner_a["id"] not in [u["id"] for u in body["data"]["users"]]
    status, body = await inbox(service, a, "GET", "/v1/whoami")
    assert status == 200, body
    # And they can be added again.
    assert (await added(service, b, email=owner_a["email"]))["id"] == owner_a["id"]


async def test_who_may_change_the_team(service: Service, db: Database) -> None:
    home = await new_workspace(db, "Sunrise Dental", "+15550002222")
    mgr_ws = await new_workspace(db, "Manager Home", "+15550003333")
    mem_ws = await new_workspace(db, "Member Home", "+15550004444")
    owner, manager, member = (
        await me(service, home),
        await me(service, mgr_ws),
        await me(service, mem_ws),
    )
    await added(service, home, email=manager["email"], role="manager")
    await added(service, home, email=member["email"])
    sarah = await added(service, home, **SARAH)
    in_home: dict[str, Any] = {"subdomain": "sunrise-dental"}

    async def as_(creds: Credentials, method: str, path: str, **params: Any) -> tuple[int, Any]:
        return await inbox(service, creds, method, path, **in_home, **params)

    # A member reads the team but changes nothing, except their own password and MFA phone.
    status, body = await as_(mem_ws, "GET", "/v1/users")
    assert status == 200, body
    for method, path, params in (
        ("POST", "/v1/users", {"email": "new@example.com"}),
        ("PUT", f"/v1/users/{sarah['id']}", {"role": "manager"}),
        ("POST", f"/v1/users/{sarah['id']}/disable", {}),
        ("POST", f"/v1/users/{sarah['id']}/enable", {}),
        ("DELETE", f"/v1/users/{sarah['id']}", {}),
        ("DELETE", f"/v1/users/{owner['id']}", {}),
        ("POST", f"/v1/users/{sarah['id']}/password_reset", {}),
        ("POST", f"/v1/users/{sarah['id']}/mfa_phone", {"phone": "+14155559876"}),
        ("PUT", f"/v1/users/{member['id']}", {"role": "owner"}),
    ):
        status, body = await as_(mem_ws, method, path, **params)
        refused(status, body, 403, "forbidden")
    status, body = await as_(mem_ws, "POST", f"/v1/users/{member['id']}/password_reset")
    assert status == 200, body
    status, body = await as_(
        mem_ws, "POST", f"/v1/users/{member['id']}/mfa_phone", phone="+14155559876"
    )
    assert status == 200, body

    # A manager runs the members but cannot make an owner or touch one.
    status, body = await as_(mgr_ws, "PUT", f"/v1/users/{sarah['id']}", role="manager")
    assert user_of(body)["role"] == "manager"
    status, body = await as_(mgr_ws, "POST", f"/v1/users/{sarah['id']}/disable")
    assert user_of(body)["enabled"] is False
    status, body = await as_(mgr_ws, "POST", f"/v1/users/{sarah['id']}/enable")
    assert user_of(body)["enabled"] is True
    status, body = await as_(mgr_ws, "POST", f"/v1/users/{sarah['id']}/password_reset")
    assert status == 200, body
    status, body = await as_(mgr_ws, "POST", "/v1/users", email="temp@example.com")
    assert user_of(body)["role"] == "member"
    for method, path, params in (
        ("POST", "/v1/users", {"email": "boss@example.com", "role": "owner"}),
        ("PUT", f"/v1/users/{sarah['id']}", {"role": "owner"}),
        ("PUT", f"/v1/users/{owner['id']}", {"role": "member"}),
        ("POST", f"/v1/users/{owner['id']}/disable", {}),
        ("DELETE", f"/v1/users/{owner['id']}", {}),
        ("POST", f"/v1/users/{owner['id']}/password_reset", {}),
        ("POST", f"/v1/users/{sarah['id']}/mfa_phone", {"phone": "+14155559876"}),
    ):
        status, body = await as_(mgr_ws, method, path, **params)
        refused(status, body, 403, "forbidden")
    status, body = await as_(mgr_ws, "DELETE", "/v1/users/temp@example.com")
    assert status == 200, body

    # An owner may do all of it; the owner's role shows billing and the organisation.
    status, body = await as_(home, "POST", f"/v1/users/{sarah['id']}/mfa_phone", phone="4155550000")
    assert status == 200, body
    status, body = await as_(home, "PUT", f"/v1/users/{manager['id']}", role="owner")
    promoted = user_of(body)
    assert (promoted["role"], promoted["can_view_billing"], promoted["can_view_org"]) == (
        "owner",
        True,
        True,
    )
    status, body = await as_(home, "PUT", f"/v1/users/{owner['id']}", role="member")
    assert user_of(body)["role"] == "member"

    # The inbox keeps an enabled owner: its last cannot step down, be disabled or be removed.
    for method, path, params in (
        ("PUT", f"/v1/users/{manager['id']}", {"role": "manager"}),
        ("POST", f"/v1/users/{manager['id']}/disable", {}),
        ("DELETE", f"/v1/users/{manager['id']}", {}),
    ):
        status, body = await as_(mgr_ws, method, path, **params)
        refused(status, body, 409, "last_owner")
    status, body = await as_(mgr_ws, "GET", f"/v1/users/{manager['id']}")
    assert (user_of(body)["role"], user_of(body)["enabled"]) == ("owner", True)

    # Adding someone already on the team is a conflict, not a second membership.
    status, body = await as_(mgr_ws, "POST", "/v1/users", email=SARAH["email"].upper())
    refused(status, body, 409, "already_member")


async def test_bad_parameters_are_422(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    sarah = await added(service, ws, **SARAH)
    for method, path, params in (
        ("POST", "/v1/users", {}),
        ("POST", "/v1/users", {"email": "not-an-email"}),
        ("POST", "/v1/users", {"email": "a@example.com", "role": "admin"}),
        ("POST", "/v1/users", {"email": "a@example.com", "phone": "call me"}),
        ("PUT", f"/v1/users/{sarah['id']}", {}),
        ("PUT", f"/v1/users/{sarah['id']}", {"role": "boss"}),
        ("POST", f"/v1/users/{sarah['id']}/mfa_phone", {}),
        ("POST", f"/v1/users/{sarah['id']}/mfa_phone", {"phone": "12"}),
        ("GET", "/v1/users", {"page": 0}),
        ("GET", "/v1/accounts", {"page": "first"}),
    ):
        status, body = await inbox(service, ws, method, path, **params)
        refused(status, body, 422, "validation_error")
    status, body = await inbox(service, ws, "GET", "/v1/users")
    assert len(body["data"]["users"]) == 2


async def test_users_come_thirty_a_page(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    emails = [f"person_{n:02d}@example.com" for n in range(31)]
    for email in emails:
        await added(service, ws, email=email)

    pages = []
    for page in (1, 2, 3):
        status, body = await inbox(service, ws, "GET", "/v1/users", page=page)
        assert status == 200, body
        assert body["page"] == page
        pages.append([u["email"] for u in body["data"]["users"]])

    assert [len(p) for p in pages] == [30, 2, 0]
    # In the order they joined, the owner first.
    assert pages[0][1:] + pages[1] == emails
