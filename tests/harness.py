"""Test harness: the real app from its factory on loopback, with stubs for Twilio and the LLM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy
from sqlalchemy import text
from sqlmodel import SQLModel
from twilio.request_validator import RequestValidator

from agent.settings import Settings
from agent.transcripts import load_conversation
from storage.engine import create_engine, create_session_factory
from webhooks.app import create_app

API_KEY = "test-api-key-0123456789"
PUBLIC_URL = "https://sms.example.test"
FROM_NUMBER = "+15550001111"
PATIENT = "+13105551234"


@dataclass(frozen=True)
class Database:
    url: str
    schema: str | None = None


def base_settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "database_schema": db.schema,
        "api_key": API_KEY,
        "public_url": PUBLIC_URL,
        "from_number": FROM_NUMBER,
        "business_name": "Bright Smiles Dental",
        "vertical": "dental",
        "timezone": "America/Denver",
        # Tests run at any hour: quiet hours are tested on their own.
        "send_window": "00:00-24:00",
        # Test receivers listen on loopback; the guard is tested on its own.
        "callbacks_allow_private": True,
        "turn_quiet_seconds": 0.05,
        "job_lease_seconds": 3.0,
        "worker_poll_seconds": 0.05,
        "llm_timeout_seconds": 10.0,
        "llm_max_retries": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class Service:
    """The app built by `create_app`, served on 127.0.0.1, talked to over HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = TestServer(create_app(settings), host="127.0.0.1")
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.server.start_server()
        self.http = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.http:
            await self.http.close()
        await self.server.close()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        assert self.http is not None
        all_headers = {"Authorization": f"Bearer {API_KEY}"} if auth else {}
        all_headers.update(headers or {})
        async with self.http.request(
            method, self.url(path), json=json, data=data, headers=all_headers
        ) as response:
            text = await response.text()
            body: Any = text
            if response.content_type == "application/json":
                body = await response.json()
            return response.status, body, response.headers

    async def kickoff(self, **body: Any) -> tuple[int, Any]:
        payload = {"to": "(310) 555-1234", "message": "Hi Sarah! Reply Y to confirm."}
        payload.update(body)
        status, answer, _ = await self.request("POST", "/v1/conversations", json=payload)
        return status, answer

    async def twilio_inbound(
        self,
        body: str,
        *,
        sid: str,
        sender: str = PATIENT,
        signature_url: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, str, float]:
        """POST a Twilio-signed inbound; returns status, body and seconds taken."""
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.settings.twilio_account_sid or "",
            "From": sender,
            "To": self.settings.from_number,
            "Body": body,
            "NumMedia": "0",
        }
        return await self.twilio_post(
            "/webhooks/twilio/sms", params, signature_url=signature_url, signature=signature
        )

    async def twilio_post(
        self,
        path: str,
        params: dict[str, str],
        *,
        signature_url: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, str, float]:
        assert self.http is not None
        assert self.settings.twilio_auth_token is not None
        token = self.settings.twilio_auth_token.get_secret_value()
        signed_url = signature_url or f"{PUBLIC_URL}{path}"
        if signature is None:
            signature = RequestValidator(token).compute_signature(signed_url, params)
        started = time.perf_counter()
        async with self.http.post(
            self.url(path), data=params, headers={"X-Twilio-Signature": signature}
        ) as response:
            text = await response.text()
            return response.status, text, time.perf_counter() - started

    async def conversation(self, conversation_id: str) -> Any:
        status, body, _ = await self.request("GET", f"/v1/conversations/{conversation_id}")
        assert status == 200, body
        return body


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def read_conversation(db: Database, conversation_id: str) -> Any:
    """Read a thread straight from the database, as the review CLI does."""
    engine = create_engine(db.url, schema=db.schema)
    try:
        return await load_conversation(
            sessions=create_session_factory(engine), conversation_id=conversation_id
        )
    finally:
        await engine.dispose()


async def count_rows(db: Database, table: str) -> int:
    assert table in SQLModel.metadata.tables
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608
    finally:
        await engine.dispose()


async def post_signed(
    http: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    *,
    auth_token: str,
    signed_url: str,
) -> tuple[int, str]:
    """POST a form signed the way Twilio signs it, with Twilio's own code."""
    signature = RequestValidator(auth_token).compute_signature(signed_url, params)
    async with http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response:
        return response.status, await response.text()
