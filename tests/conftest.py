"""Shared fixtures: a database per test (SQLite file, or a PostgreSQL schema), stubs, the app."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent.evals.scripted import ScriptedLLM
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, base_settings

PG_DSN = os.environ.get("SMSAGENT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, str | None] = {}


async def _pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers (asked once per run)."""
    if "reason" not in _pg_state:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=3)
            await conn.close()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL at {PG_DSN} does not answer: {exc!r}"
    return _pg_state["reason"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'smsagent.db'}")
        return
    reason = await _pg_unavailable()
    if reason:
        pytest.skip(reason)
    schema = f"t_{secrets.token_hex(6)}"
    yield Database(PG_DSN.replace("postgresql://", "postgresql+asyncpg://"), schema)
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    return Database(f"sqlite+aiosqlite:///{tmp_path / 'smsagent.db'}")


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as server:
        yield server


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStub]:
    async with TwilioStub() as stub:
        yield stub


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(
    db: Database, llm: ScriptedLLM, twilio: TwilioStub, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Start the app wired to Twilio's stub and the scripted LLM; overrides go to Settings."""
    started: list[Service] = []

    async def make(**overrides: Any) -> Service:
        values: dict[str, Any] = {
            "sms_provider": "twilio",
            "twilio_api_url": twilio.base_url,
            "twilio_account_sid": twilio.account_sid,
            "twilio_auth_token": twilio.auth_token,
            "llm_base_url": llm.base_url,
            "llm_model": "scripted-model",
            "llm_api_key": "sk-test",
            # Photos that come with texts are kept beside the test's database, not in ./var.
            "media_dir": str(tmp_path / "media"),
        }
        values.update(overrides)
        service = Service(base_settings(db, **values))
        await service.start()
        started.append(service)
        return service

    yield make
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def service(make_service: ServiceFactory) -> Service:
    return await make_service()
