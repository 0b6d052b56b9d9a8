"""Workspaces for tests: made the way `smsagent workspaces create` makes them."""

from __future__ import annotations

from typing import Any

from agent.workspaces import Credentials, create_workspace
from storage.engine import create_engine, create_session_factory
from tests.harness import PUBLIC_URL, Database, Service


async def new_workspace(
    db: Database,
    name: str,
    *numbers: str,
    vertical: str = "dental",
    timezone: str = "America/Denver",
    provider: str = "twilio",
) -> Credentials:
    engine = create_engine(db.url, schema=db.schema)
    try:
        return await create_workspace(
            create_session_factory(engine),
            name=name,
            vertical=vertical,
            timezone=timezone,
            numbers=list(numbers),
            provider=provider,
        )
    finally:
        await engine.dispose()


async def call(
    service: Service,
    method: str,
    path: str,
    key: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A request with this workspace's API key."""
    status, body, _ = await service.request(
        method,
        path,
        json=json,
        auth=False,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )
    return status, body


async def text_in(
    service: Service, *, sid: str, sender: str, to: str, body: str
) -> tuple[int, str, float]:
    """A customer's text to one of our numbers, signed as Twilio signs it."""
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": service.settings.twilio_account_sid or "",
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
    }
    return await service.twilio_post(
        "/webhooks/twilio/sms", params, signature_url=f"{PUBLIC_URL}/webhooks/twilio/sms"
    )
