"""How fast a signed Twilio inbound is accepted: verified, stored with its job, answered 200.

The baseline is the HTTP floor on the same machine in the same run: an aiohttp handler that
parses the same form and returns the same TwiML, with no signature check and no database.
Targets and baseline alternate round by round so machine noise hits both alike; the figures
are medians over rounds. The worker is off, so only the webhook path is measured.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from agent.settings import Settings
from webhooks.app import create_app
from webhooks.inbound import EMPTY_TWIML

PUBLIC_URL = "https://bench.example.test"
AUTH_TOKEN = "bench-auth-token"  # noqa: S105 - signs loopback requests only
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Result:
    throughput: float  # requests per second
    p50_ms: float
    p99_ms: float


def _settings(url: str, schema: str | None) -> Settings:
    return Settings(
        database_url=url,
        database_schema=schema,
        sms_provider="twilio",
        public_url=PUBLIC_URL,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=AUTH_TOKEN,
        run_worker=False,
    )


def _floor_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/sms", handler)
    return app


def _requests(n: int) -> list[tuple[dict[str, str], str]]:
    validator = RequestValidator(AUTH_TOKEN)
    signed = []
    for i in range(n):
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "From": f"+1310555{i % 5000:04d}",
            "To": "+15550000000",
            "Body": "Can I move my appointment to Thursday?",
            "NumMedia": "0",
        }
        signed.append(
            (params, validator.compute_signature(f"{PUBLIC_URL}/webhooks/twilio/sms", params))
        )
    return signed


async def _load(url: str, requests: list[tuple[dict[str, str], str]], concurrency: int) -> Result:
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            params, signature = queue.pop()
            started = time.perf_counter()
            async with http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url} answered {r.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(
        throughput=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def run(*, requests: int, concurrency: int, rounds: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        targets: dict[str, Callable[[], Awaitable[web.Application]]] = {}
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"

        async def sqlite_app() -> web.Application:
            return create_app(_settings(sqlite_url, None))

        targets["sqlite"] = sqlite_app
        schema = f"bench_{secrets.token_hex(4)}"
        if postgres and await _pg_answers():

            async def pg_app() -> web.Application:
                return create_app(
                    _settings(PG_DSN.replace("postgresql://", "postgresql+asyncpg://"), schema)
                )

            targets["postgresql"] = pg_app

        servers = {"floor": await _serve(_floor_app())}
        for name, make in targets.items():
            servers[name] = await _serve(await make())
        results: dict[str, list[Result]] = {name: [] for name in servers}
        try:
            for _ in range(rounds):
                for name, server in servers.items():
                    url = str(server.make_url("/webhooks/twilio/sms"))
                    results[name].append(await _load(url, _requests(requests), concurrency))
        finally:
            for server in servers.values():
                await server.close()
            if "postgresql" in targets:
                await _drop_schema(schema)
    _report(results, requests=requests, concurrency=concurrency, rounds=rounds)


def _median(results: list[Result]) -> Result:
    return Result(
        throughput=statistics.median(r.throughput for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
    )


def _report(
    results: dict[str, list[Result]], *, requests: int, concurrency: int, rounds: int
) -> None:
    floor = _median(results["floor"])
    print(
        f"inbound webhook acceptance: {requests} signed Twilio posts x {rounds} rounds, "
        f"{concurrency} concurrent, loopback"
    )
    print(
        f"{'target':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'req/s vs floor':>16}{'p99 vs floor':>14}"
    )
    for name, runs in results.items():
        m = _median(runs)
        print(
            f"{name:<12}{m.throughput:>10.0f}{m.p50_ms:>10.2f}{m.p99_ms:>10.2f}"
            f"{m.throughput / floor.throughput:>15.2f}x{m.p99_ms / floor.p99_ms:>13.2f}x"
        )


async def _pg_answers() -> bool:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception:
        print("PostgreSQL does not answer; measuring SQLite only")
        return False
    await conn.close()
    return True


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
