"""`Idempotency-Key` on POST /v1/conversations: a retry gets the first answer, never a second
conversation or a second text."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from storage.engine import create_engine
from storage.raw import Dialect
from storage.types import utcnow
from tests.fakes.twilio_server import TwilioStub
from tests.harness import Database, Service, count_rows
from tests.test_kickoff import KICKOFF


async def _post(service: Service, key: str, body: dict[str, Any]) -> tuple[int, Any, Any]:
    return await service.request(
        "POST", "/v1/conversations", json=body, headers={"Idempotency-Key": key}
    )


async def test_a_retry_gets_the_first_answer_and_sends_nothing_twice(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    status, first, headers = await _post(service, "kick-1", KICKOFF)
    assert status == 201, first
    assert "Idempotent-Replayed" not in headers

    status, again, headers = await _post(service, "kick-1", KICKOFF)
    assert status == 201
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"

    await twilio.wait_for_messages(1)
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1
    assert await count_rows(db, "conversations") == 1
    # The answer was kept by the kickoff's own transaction, exactly as sent.
    engine = create_engine(db.url, schema=db.schema)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT state, response_status, response_body FROM idempotency_keys")
                )
            ).one()
    finally:
        await engine.dispose()
    assert (row[0], row[1]) == ("done", 201)
    assert json.loads(row[2]) == first

    # Without a key, or with another, it is a new request.
    status, other, _ = await _post(service, "kick-2", KICKOFF)
    assert status == 201
    assert other["conversation_id"] != first["conversation_id"]


async def test_the_same_key_for_another_request_is_refused(service: Service, db: Database) -> None:
    status, _, _ = await _post(service, "kick-1", KICKOFF)
    assert status == 201
    status, body, _ = await _post(service, "kick-1", {**KICKOFF, "message": "Something else"})
    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    assert await count_rows(db, "conversations") == 1


async def test_two_at_once_with_one_key_make_one_conversation(
    service: Service, twilio: TwilioStub, db: Database
) -> None:
    answers = await asyncio.gather(*(_post(service, "same", KICKOFF) for _ in range(4)))
    statuses = sorted(status for status, _, _ in answers)
    # The first runs; the others either wait out its answer (replayed) or are told it is busy.
    assert statuses[0] == 201
    assert set(statuses) <= {201, 409}
    busy = [body for status, body, _ in answers if status == 409]
    assert all(b["error"]["code"] == "idempotency_key_in_use" for b in busy)
    created = {body["conversation_id"] for status, body, _ in answers if status == 201}
    assert len(created) == 1
    await twilio.wait_for_messages(1)
    await asyncio.sleep(0.3)
    assert len(twilio.messages) == 1
    assert await count_rows(db, "conversations") == 1


async def test_an_invalid_request_keeps_nothing_so_the_fix_may_reuse_the_key(
    service: Service, db: Database
) -> None:
    status, body, _ = await _post(service, "kick-1", {**KICKOFF, "to": "not a phone"})
    assert status == 422
    assert body["error"]["code"] == "validation_error"
    status, _, headers = await _post(service, "kick-1", KICKOFF)
    assert status == 201
    assert "Idempotent-Replayed" not in headers
    assert await count_rows(db, "conversations") == 1


async def test_a_bad_key_is_a_clear_error(service: Service) -> None:
    status, body, _ = await _post(service, "x" * 256, KICKOFF)
    assert status == 400
    assert body["error"]["code"] == "invalid_idempotency_key"


async def test_a_claim_left_by_a_dead_process_lapses_and_a_day_old_key_is_forgotten(
    service: Service, db: Database
) -> None:
    status, first, _ = await _post(service, "kick-1", KICKOFF)
    assert status == 201
    engine = create_engine(db.url, schema=db.schema)
    dialect = Dialect(engine.dialect.name)
    try:
        async with engine.begin() as conn:
            # As if the process had died while running a second key's request a minute ago.
            await conn.execute(
                text(
                    "INSERT INTO idempotency_keys (workspace_id, key, fingerprint, state, "
                    "locked_until, created_at) SELECT workspace_id, 'kick-2', fingerprint, "
                    "'running', :lapsed, created_at FROM idempotency_keys WHERE key = 'kick-1'"
                ),
                {"lapsed": dialect.ts(utcnow() - timedelta(minutes=1))},
            )
            # And the first key is a day and a minute old.
            await conn.execute(
                text("UPDATE idempotency_keys SET created_at = :old WHERE key = 'kick-1'"),
                {"old": dialect.ts(utcnow() - timedelta(days=1, minutes=1))},
            )
    finally:
        await engine.dispose()

    status, second, headers = await _post(service, "kick-2", KICKOFF)
    assert status == 201  # taken over, run afresh
    assert "Idempotent-Replayed" not in headers
    status, third, headers = await _post(service, "kick-1", KICKOFF)
    assert status == 201  # forgotten: a new request
    assert "Idempotent-Replayed" not in headers
    assert len({first["conversation_id"], second["conversation_id"], third["conversation_id"]}) == 3
