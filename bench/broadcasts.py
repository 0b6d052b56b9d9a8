"""Broadcast enqueue: publishing a draft to N tagged contacts (its audience becomes its
recipients), against the floor of writing N such rows with a bare executemany on the same
SQLite file.

`python -m bench broadcasts [--recipients 10000]`
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from agent.broadcasts import AudienceRequest, Changes, create_broadcast, publish_broadcast
from agent.deps import DEFAULT_WORKSPACE_ID
from agent.settings import Settings
from storage.types import new_id, utcnow
from webhooks.app import runtime

TARGET_SECONDS = 2.0


async def run(recipients: int) -> None:
    with tempfile.TemporaryDirectory(prefix="smsagent-bench-") as folder:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}",
            log_level="WARNING",
        )
        async with runtime(settings, brain=None, worker=False) as deps:
            stamp = utcnow()
            rows = [
                {
                    "id": new_id("ct"),
                    "phone": f"+1415{n:07d}",
                    "ws": DEFAULT_WORKSPACE_ID,
                    "at": stamp,
                }
                for n in range(recipients)
            ]
            async with deps.engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO contacts (id, workspace_id, phone, custom_fields, tags, "
                        "opted_out, blocked, profile, created_at, updated_at) VALUES "
                        "(:id, :ws, :phone, '{}', '[\"spring\"]', 0, 0, '{}', :at, :at)"
                    ),
                    rows,
                )
                await conn.execute(
                    text(
                        "CREATE TABLE floor_rows (broadcast_id TEXT, contact_id TEXT, "
                        "status TEXT, created_at TEXT, PRIMARY KEY (broadcast_id, contact_id))"
                    )
                )
            started = time.perf_counter()
            async with deps.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO floor_rows VALUES ('bc_floor', :id, 'pending', :at)"),
                    [{"id": r["id"], "at": stamp.isoformat()} for r in rows],
                )
            floor = time.perf_counter() - started

            broadcast_id = await create_broadcast(
                deps,
                workspace_id=DEFAULT_WORKSPACE_ID,
                user_id="usr_bench",
                changes=Changes(
                    message="Spring cleaning special: reply YES to book.",
                    audience=AudienceRequest(tags=["spring"]),
                ),
            )
            started = time.perf_counter()
            await publish_broadcast(
                deps, workspace_id=DEFAULT_WORKSPACE_ID, broadcast_id=broadcast_id, at=None
            )
            took = time.perf_counter() - started
            async with deps.engine.connect() as conn:
                queued = (
                    await conn.execute(
                        text("SELECT count(*) FROM broadcast_recipients WHERE broadcast_id = :b"),
                        {"b": broadcast_id},
                    )
                ).scalar_one()
    print(f"broadcasts: publish to {recipients} tagged contacts on SQLite (audience → recipients)")
    print(f"{'target':28}{'seconds':>9}{'rows':>8}{'vs floor':>10}")
    print(f"{'floor (bare executemany)':28}{floor:>9.3f}{recipients:>8}{1.0:>9.2f}x")
    print(f"{'publish':28}{took:>9.3f}{queued:>8}{took / floor:>9.2f}x")
    print(f"target: <= {TARGET_SECONDS:.0f} s for 10,000 recipients")


def main(recipients: int) -> None:
    asyncio.run(run(recipients))
