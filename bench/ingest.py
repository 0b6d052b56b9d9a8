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
    try:
        twilio.start()
        floor.start()
        await wait_healthy(floor_port)
        layouts = [("sqlite x1", False, 1)]
        if postgres and await pg_answers():
            layouts += [("postgresql x1", True, 1), ("postgresql x2", True, 2)]
        runs: dict[str, list[dict[str, float]]] = {"floor": []}
        paced: dict[str, list[dict[str, float]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            for _ in range(rounds):
                for name, on_postgres, processes in layouts:
                    runs["floor"].append(
                        run_wrk(
                            floor_port,
                            _script(directory, seconds),
                            seconds=seconds,
                            connections=connections,
                        )
                    )
                    # A fresh database and process for every measurement: nothing left over
                    # from another target's run (its backlog of turns) competes for the CPU.
                    full, half = await _measure(
                        directory, on_postgres, processes, twilio_port, seconds, connections
                    )
                    runs.setdefault(name, []).append(full)
                    paced.setdefault(name, []).append(half)
    finally:
        floor.stop()
        twilio.stop()
    _report([name for name, _, _ in layouts], runs, paced, seconds, connections, rounds)


def _script(directory: Path, seconds: float, delay_ms: float = 0.0) -> Path:
    # Fresh message ids every run: a repeated id is a (cheaper) duplicate.
    texts = signed_texts(int(seconds * 9000), numbers=5_000)
    return wrk_script(texts, directory, delay_ms=delay_ms)


async def _measure(
    directory: Path,
    on_postgres: bool,
    processes: int,
    twilio_port: int,
    seconds: float,
    connections: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """(full load, paced at half the rate it reached) on a fresh `serve`."""
    schema = f"bench_{secrets.token_hex(4)}" if on_postgres else None
    url = PG_DSN if on_postgres else f"sqlite:///{directory / f'{secrets.token_hex(4)}.db'}"
    port = free_port()
    env = serve_env(url, port, twilio_api_url=f"http://127.0.0.1:{twilio_port}")
    process = Process(
        ["-m", "webhooks.cli", "serve", "--processes", str(processes)], with_schema(env, schema)
    )
    try:
        process.start()
        await wait_healthy(port)
        full = run_wrk(port, _script(directory, seconds), seconds=seconds, connections=connections)
        # Each connection waits so that together they send half the rate just reached.
        delay_ms = max(0.0, connections * 1000 / (full["rps"] / 2) - full["p50"])
        half = run_wrk(
            port, _script(directory, seconds, delay_ms), seconds=seconds, connections=connections
        )
        return full, half
    finally:
        process.stop()
        if schema is not None:
            await drop_schema(schema)


def _report(
    names: list[str],
    runs: dict[str, list[dict[str, float]]],
    paced: dict[str, list[dict[str, float]]],
    seconds: float,
    connections: int,
    rounds: int,
) -> None:
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
    for name in names:
        m, lm = _median(runs[name]), _median(paced[name])
        print(
            f"{name:<16}{m['rps']:>9.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}"
            f"{m['rps'] / floor['rps']:>9.3f}x{lm['rps']:>25.0f}{lm['p99']:>8.2f}"
        )
    print("target: >= 0.25x floor; p99 <= 50 ms at half that rate; PostgreSQL x2 >= SQLite")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(seconds: float, connections: int, rounds: int, postgres: bool) -> None:
    asyncio.run(run(seconds=seconds, connections=connections, rounds=rounds, postgres=postgres))
