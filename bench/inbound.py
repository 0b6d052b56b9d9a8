"""How fast a signed Twilio inbound is accepted: verified, stored with its job, answered 200.

Each target is its own process, as deployed: `smsagent serve` with the worker off (so only the
webhook path is measured) on SQLite and on PostgreSQL, and the baseline, `bench.floor`, an aiohttp
server that parses the same form and returns the same TwiML with no signature check and no
database: the HTTP floor of this machine. The load comes from this process. Targets alternate
round by round so machine noise hits all alike; figures are medians over rounds.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://bench.example.test"
AUTH_TOKEN = "bench-auth-token"  # noqa: S105 - signs loopback requests only
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Result:
    throughput: float  # requests per second
    p50_ms: float
    p99_ms: float


def _serve_env(database_url: str, schema: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "SMSAGENT_DATABASE_URL": database_url,
        "SMSAGENT_SMS_PROVIDER": "twilio",
        "SMSAGENT_PUBLIC_URL": PUBLIC_URL,
        "SMSAGENT_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "SMSAGENT_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SMSAGENT_RUN_WORKER": "false",
        "SMSAGENT_LOG_LEVEL": "WARNING",
    }
    if schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = schema
    return env


class Target:
    def __init__(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.args, self.env, self.port = name, args, env, port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/twilio/sms"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def run(*, requests: int, concurrency: int, rounds: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        targets = [
            Target("floor", ["-m", "bench.floor", str(port := _free_port())], {**os.environ}, port)
        ]
        serve = ["-m", "webhooks.cli", "serve"]
        sqlite_env = _serve_env(f"sqlite:///{Path(tmp) / 'bench.db'}", None)
        targets.append(
            Target(
                "sqlite", serve, {**sqlite_env, "SMSAGENT_PORT": str(port := _free_port())}, port
            )
        )
        schema = f"bench_{secrets.token_hex(4)}"
        if postgres and await _pg_answers():
            pg_env = _serve_env(PG_DSN, schema)
            targets.append(
                Target(
                    "postgresql",
                    serve,
                    {**pg_env, "SMSAGENT_PORT": str(port := _free_port())},
                    port,
                )
            )
        results: dict[str, list[Result]] = {t.name: [] for t in targets}
        try:
            for target in targets:
                await target.start()
            for _ in range(rounds):
                for target in targets:
                    results[target.name].append(
                        await _load(target.url, _requests(requests), concurrency)
                    )
        finally:
            for target in targets:
                await target.stop()
            if postgres:
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
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception:
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
