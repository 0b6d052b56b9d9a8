"""Scale: PostgreSQL with 1, 2 and 4 `serve` processes; turns/s as they grow, against one
process measured in the same run. (Ingest with 2 processes is in `bench ingest`.)"""

from __future__ import annotations

import asyncio
import secrets

from bench.common import PG_DSN, drop_schema, pg_answers
from bench.turns import measure


async def run(*, processes: list[int], turns: int) -> None:
    if not await pg_answers():
        return
    print(f"scale: PostgreSQL, {turns} turns, zero-latency model")
    print(f"{'processes':<12}{'turns/s':>9}{'CPU ms/turn':>13}{'vs 1 process':>14}")
    base = 0.0
    for count in processes:
        schema = f"bench_{secrets.token_hex(4)}"
        try:
            rate, cpu = await measure(PG_DSN, schema, turns=turns, processes=count)
        finally:
            await drop_schema(schema)
        base = base or rate
        print(f"{count:<12}{rate:>9.0f}{cpu:>13.2f}{rate / base:>13.2f}x")
    print("target: 2 processes >= 1.6x one on turns")


def main(processes: list[int], turns: int) -> None:
    asyncio.run(run(processes=processes, turns=turns))
