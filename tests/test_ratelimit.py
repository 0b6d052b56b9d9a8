"""The API's rate limit: past its burst a credential is answered 429 with `Retry-After`, and
the refused request does nothing; other credentials and provider webhooks go on as before."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from agent.workspaces import create_workspace
from tests.conftest import ServiceFactory
from tests.harness import Database, Service, count_rows
from webhooks.keys import DEPS
from webhooks.ratelimit import TokenBuckets


def _assert_limited(status: int, body: Any, headers: Mapping[str, str], retry_after: int) -> None:
    """A 429 telling the client to wait about `retry_after` seconds (less the time the test
    itself took since the bucket ran dry)."""
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited"
    waited = int(headers["Retry-After"])
    assert body["error"]["details"]["retry_after_seconds"] == waited
    assert max(1, retry_after - 5) <= waited <= retry_after


async def test_past_the_burst_a_kickoff_is_refused_and_changes_nothing(
    make_service: ServiceFactory, db: Database
) -> None:
    # A request every hundred seconds, after the first two.
    service = await make_service(api_rate_burst=2, api_rate_per_second=0.01)
    for _ in range(2):
        status, body = await service.kickoff()
        assert status == 201, body

    status, body, headers = await service.request(
        "POST", "/v1/conversations", json={"to": "(310) 555-9876", "message": "Hello there"}
    )
    _assert_limited(status, body, headers, retry_after=100)

    assert await count_rows(db, "conversations") == 2
    assert await count_rows(db, "messages") == 2
    assert await count_rows(db, "contacts") == 1


async def test_another_key_has_its_own_bucket(make_service: ServiceFactory) -> None:
    service = await make_service(api_rate_burst=2, api_rate_per_second=0.01)
    other = await create_workspace(
        service.server.app[DEPS].sessions,
        name="Other Clinic",
        vertical="dental",
        timezone="America/Denver",
        numbers=["+15550002222"],
        provider="twilio",
    )
    for _ in range(2):
        status, body, _ = await service.request("GET", "/v1/conversations")
        assert status == 200, body
    status, body, headers = await service.request("GET", "/v1/conversations")
    _assert_limited(status, body, headers, retry_after=100)

    bearer = {"Authorization": f"Bearer {other.api_key}"}
    for _ in range(2):
        status, body, _ = await service.request(
            "GET", "/v1/conversations", auth=False, headers=bearer
        )
        assert status == 200, body
        assert body["data"] == []
    status, body, headers = await service.request(
        "GET", "/v1/conversations", auth=False, headers=bearer
    )
    _assert_limited(status, body, headers, retry_after=100)


async def test_the_bucket_refills(make_service: ServiceFactory) -> None:
    service = await make_service(api_rate_burst=1, api_rate_per_second=5)
    # One token, back in a fifth of a second: back-to-back requests soon find the bucket empty.
    answers = []
    for _ in range(20):
        status, body, headers = await service.request("GET", "/v1/conversations")
        answers.append(status)
        if status == 429:
            break
    assert answers[0] == 200
    _assert_limited(status, body, headers, retry_after=1)
    await asyncio.sleep(0.25)
    status, body, _ = await service.request("GET", "/v1/conversations")
    assert status == 200, body


async def test_the_avaamo_channel_in_the_path_is_the_credential(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(api_rate_burst=2, api_rate_per_second=0.01)
    workspace = await create_workspace(
        service.server.app[DEPS].sessions,
        name="Other Clinic",
        vertical="dental",
        timezone="America/Denver",
        numbers=["+15550002222"],
        provider="twilio",
    )
    # Sends missing what they need: answered (not sent), but counted all the same.
    path = f"/compat/avaamo/sms/{workspace.avaamo_channel_uuid}/send.json"
    for _ in range(2):
        status, body, _ = await service.request("POST", path, json={}, auth=False)
        assert status != 429, body
    status, body, headers = await service.request("POST", path, json={}, auth=False)
    _assert_limited(status, body, headers, retry_after=100)

    # Another channel has a bucket of its own; unknown ones count against the address too.
    for _ in range(2):
        status, body, _ = await service.request(
            "POST", f"/compat/avaamo/sms/{uuid.uuid4()}/send.json", json={}, auth=False
        )
        assert status == 404, body
    status, body, headers = await service.request(
        "POST", f"/compat/avaamo/sms/{uuid.uuid4()}/send.json", json={}, auth=False
    )
    _assert_limited(status, body, headers, retry_after=100)


async def test_requests_without_a_valid_key_are_limited_by_address(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(api_rate_burst=3, api_rate_per_second=0.01)
    for _ in range(2):
        status, body, _ = await service.request("GET", "/v1/conversations", auth=False)
        assert status == 401, body
    # A guessed key is answered, and its refusal counts against the address too.
    guess = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
    status, body, _ = await service.request("GET", "/v1/conversations", auth=False, headers=guess)
    assert status == 401, body

    status, body, headers = await service.request("GET", "/v1/conversations", auth=False)
    _assert_limited(status, body, headers, retry_after=100)
    guess = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
    status, body, headers = await service.request(
        "GET", "/v1/conversations", auth=False, headers=guess
    )
    _assert_limited(status, body, headers, retry_after=100)


async def test_provider_webhooks_health_and_short_links_are_not_limited(
    make_service: ServiceFactory,
) -> None:
    service: Service = await make_service(api_rate_burst=1, api_rate_per_second=0.01)
    for n in range(5):
        status, text, _ = await service.twilio_post(
            "/webhooks/twilio/status", {"MessageSid": f"SM{n:032d}", "MessageStatus": "receiving"}
        )
        assert status == 204, text
        status, body, _ = await service.request("GET", "/healthz", auth=False)
        assert status == 200, body
        status, body, _ = await service.request("GET", "/l/Zz9Zz9Zz", auth=False)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
    status, body, _ = await service.request("GET", "/v1/conversations")
    assert status == 200, body


def test_buckets_wait_refill_and_forget_idle_keys() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0], max_buckets=4)
    assert [buckets.take(b"a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(b"a") == 0.5
    now[0] += 0.25
    assert buckets.wait(b"a") == 0.25
    now[0] += 0.25
    assert buckets.take(b"a") == 0.0
    assert buckets.take(b"a") == 0.5

    # Full again after burst / rate seconds: dropped, as a new bucket would be the same.
    now[0] += 1.5
    assert buckets.take(b"b") == 0.0
    assert len(buckets) == 1
    assert [buckets.take(b"a") for _ in range(3)] == [0.0, 0.0, 0.0]

    # Never more than `max_buckets`: the least recently used go first.
    for key in (b"c", b"d", b"e", b"f"):
        buckets.take(key)
    assert len(buckets) == 4
    assert buckets.take(b"a") == 0.0  # forgotten, so full again
