"""Ingest: signed Twilio webhooks acknowledged per second, against a bare aiohttp form handler.

`wrk` drives each target (a Python client would be the bottleneck). Targets: `bench.floor`
(parses the same form, answers the same TwiML; no signature, no database), and `smsagent serve`
with its worker on, on SQLite and on PostgreSQL (1 and 2 processes). Floor and target
alternate round by round; figures are medians. The paced run sends at half the rate the same
target just reached (wrk's per-connection `delay`), for latency below saturation.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
from pathlib import Path

from bench.common import (
    PG_DSN,
    Process,
    drop_schema,
    free_port,
    pg_answers,
    run_wrk,
    serve_env,
    signed_texts,
    stubs,
    wait_healthy,
    with_schema,
    wrk_script,
)


async def run(*, seconds: float, connections: int, rounds: int, postgres: bool) -> None:
    twilio, twilio_port, _, _ = stubs(0)
    floor_port = free_port()
    floor = Process(["-m", "bench.floor", str(floor_port)])
    started: list[Process] = [twilio, floor]
    schemas: list[str] = []
    try:
        twilio.start()
        floor.start()
        await wait_healthy(floor_port)
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            layouts: list[tuple[str, str, str | None, int]] = [
                ("sqlite x1", f"sqlite:///{directory / 'bench.db'}", None, 1)
            ]
            if postgres and await pg_answers():
                for processes in (1, 2):
                    schemas.append(f"bench_{secrets.token_hex(4)}")
                    layouts.append((f"postgresql x{processes}", PG_DSN, schemas[-1], processes))
            targets: list[tuple[str, int]] = []
            for name, url, schema, processes in layouts:
                port = free_port()
                env = serve_env(url, port, twilio_api_url=f"http://127.0.0.1:{twilio_port}")
                process = Process(
                    ["-m", "webhooks.cli", "serve", "--processes", str(processes)],
                    with_schema(env, schema),
                )
                process.start()
                started.append(process)
                await wait_healthy(port)
                targets.append((name, port))
            _report(directory, floor_port, targets, seconds, connections, rounds)
    finally:
        for process in started:
            process.stop()
        for schema in schemas:
            await drop_schema(schema)


def _report(
    directory: Path,
    floor_port: int,
    targets: list[tuple[str, int]],
    seconds: float,
    connections: int,
    rounds: int,
) -> None:
    def script(delay_ms: float = 0.0) -> Path:
        # Fresh message ids every run: a repeated id is a (cheaper) duplicate.
        texts = signed_texts(int(seconds * 9000), numbers=5_000)
        return wrk_script(texts, directory, delay_ms=delay_ms)

    floor_script = script()
    runs: dict[str, list[dict[str, float]]] = {"floor": []}
    light: dict[str, list[dict[str, float]]] = {}
    for _ in range(rounds):
        for name, port in targets:
            runs["floor"].append(
                run_wrk(floor_port, floor_script, seconds=seconds, connections=connections)
            )
            full = run_wrk(port, script(), seconds=seconds, connections=connections)
            runs.setdefault(name, []).append(full)
            # Each connection waits so that together they send half the rate just reached.
            delay_ms = max(0.0, connections * 1000 / (full["rps"] / 2) - full["p50"])
            light.setdefault(name, []).append(
                run_wrk(port, script(delay_ms), seconds=seconds, connections=connections)
            )
    floor = _median(runs["floor"])
    print(
        f"ingest: signed Twilio webhooks, wrk -t1 -c{connections} {seconds:g}s x {rounds} rounds, "
        "worker on (default hand-off replies to a Twilio stub)"
    )
    print(
        f"{'target':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs floor':>10}"
        "   at half that rate: req/s  p99 ms"
    )
    print(f"{'floor':<16}{floor['rps']:>9.0f}{floor['p50']:>9.2f}{floor['p99']:>9.2f}{1:>9.2f}x")
    for name, _ in targets:
        m, lm = _median(runs[name]), _median(light[name])
        print(
            f"{name:<16}{m['rps']:>9.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}"
            f"{m['rps'] / floor['rps']:>9.3f}x{lm['rps']:>25.0f}{lm['p99']:>8.2f}"
        )
    print("target: >= 0.25x floor; p99 <= 50 ms at half that rate; PostgreSQL x2 >= SQLite")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(seconds: float, connections: int, rounds: int, postgres: bool) -> None:
    asyncio.run(run(seconds=seconds, connections=connections, rounds=rounds, postgres=postgres))
