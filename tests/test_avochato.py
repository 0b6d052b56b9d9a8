"""The inbox API's common ground: credentials, subdomains, the envelope, parameters."""

from __future__ import annotations

from typing import Any

from tests.harness import Database, Service
from tests.inbox import inbox
from tests.workspaces import new_workspace
from webhooks.avochato.common import nest


def test_rails_style_parameters_nest() -> None:
    assert nest(
        [
            ("auth_id", "a"),
            ("contacts[0][phone]", "+14155553333"),
            ("contacts[0][name]", "Bob"),
            ("contacts[1][phone]", "+14155554444"),
            ("created_at[from]", "1774979137.83"),
            ("via_field[field]", "email"),
            ("tags[]", "red"),
            ("tags[]", "blue"),
        ]
    ) == {
        "auth_id": "a",
        "contacts": [{"phone": "+14155553333", "name": "Bob"}, {"phone": "+14155554444"}],
        "created_at": {"from": "1774979137.83"},
        "via_field": {"field": "email"},
        "tags": ["red", "blue"],
    }


async def test_wrong_credentials_are_401_in_the_envelope(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    for creds in ((ws.avochato_auth_id, "wrong"), ("nobody", ws.avochato_auth_secret)):
        status, body = await inbox(service, creds, "POST", "/v1/calls")
        assert status == 401
        assert body["status"] == 401
        assert body["error"]["code"] == "unauthorized"
    status, body, _ = await service.request("POST", "/compat/avochato/v1/calls", auth=False)
    assert status == 401
    assert body["error"]["message"] == "send auth_id and auth_secret"


async def test_calls_are_refused_clearly(service: Service, db: Database) -> None:
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    for via in ("json", "form", "query"):
        status, body = await inbox(service, ws, "POST", "/v1/calls", via=via)
        assert status == 403, body
        assert body["status"] == 403
        assert body["error"]["code"] == "calls_not_supported"


async def test_a_subdomain_must_be_one_of_the_users(service: Service, db: Database) -> None:
    mine = await new_workspace(db, "Sunrise Dental", "+15550002222")
    await new_workspace(db, "Other Dental", "+15550003333")
    status, _ = await inbox(service, mine, "POST", "/v1/calls", subdomain="sunrise-dental")
    assert status == 403
    status, body = await inbox(service, mine, "POST", "/v1/calls", subdomain="other-dental")
    assert status == 401
    assert body["status"] == 401


async def test_over_the_rate_the_inbox_answers_429_in_its_envelope(
    make_service: Any, db: Database
) -> None:
    service = await make_service(api_rate_per_second=0.01, api_rate_burst=2)
    ws = await new_workspace(db, "Sunrise Dental", "+15550002222")
    other = await new_workspace(db, "Other Dental", "+15550003333")
    for _ in range(2):
        status, _ = await inbox(service, ws, "POST", "/v1/calls", via="form")
        assert status == 403
    status, body = await inbox(service, ws, "POST", "/v1/calls")
    assert status == 429
    assert body["status"] == 429
    assert body["error"]["code"] == "rate_limited"
    # Another member's credentials have their own allowance.
    status, _ = await inbox(service, other, "POST", "/v1/calls", via="query")
    assert status == 403
