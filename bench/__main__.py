"""Run every benchmark: `.venv/bin/python -m bench [--requests N] [--concurrency C]`."""

from __future__ import annotations

import argparse
import asyncio

from bench.inbound import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(
        run(
            requests=args.requests,
            concurrency=args.concurrency,
            rounds=args.rounds,
            postgres=not args.no_postgres,
        )
    )


if __name__ == "__main__":
    main()
