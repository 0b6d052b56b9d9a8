"""Benchmarks, each against a baseline measured in the same run: `python -m bench <name>`."""

from __future__ import annotations

import argparse

from bench import broadcasts, capacity, ingest, review, scale, turns


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    p = sub.add_parser("ingest", help="signed webhooks/s vs a bare aiohttp form handler")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-postgres", action="store_true")
    p = sub.add_parser("turns", help="turns/s and CPU per turn, zero-latency model")
    p.add_argument("--turns", type=int, default=500)
    p.add_argument("--no-postgres", action="store_true")
    p = sub.add_parser("capacity", help="N customers at once with a slow model")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--model-seconds", type=float, default=2.0)
    p = sub.add_parser("scale", help="PostgreSQL with several processes")
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--turns", type=int, default=500)
    p = sub.add_parser("broadcasts", help="publishing a broadcast to N contacts, SQLite")
    p.add_argument("--recipients", type=int, default=10_000)
    p = sub.add_parser("review", help="export and search on 100,000 conversations")
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--no-postgres", action="store_true")
    sub.add_parser("all", help="all of them with their defaults")
    args = parser.parse_args()
    if args.name in ("ingest", "all"):
        ingest.main(
            getattr(args, "seconds", 8),
            getattr(args, "connections", 16),
            getattr(args, "rounds", 2),
            not getattr(args, "no_postgres", False),
        )
    if args.name in ("turns", "all"):
        turns.main(getattr(args, "turns", 500), not getattr(args, "no_postgres", False))
    if args.name in ("capacity", "all"):
        capacity.main(getattr(args, "customers", 1000), getattr(args, "model_seconds", 2.0))
    if args.name in ("broadcasts", "all"):
        broadcasts.main(getattr(args, "recipients", 10_000))
    if args.name in ("review", "all"):
        review.main(
            getattr(args, "conversations", 100_000), not getattr(args, "no_postgres", False)
        )
    if args.name in ("scale", "all"):
        scale.main(
            [int(n) for n in str(getattr(args, "processes", "1,2,4")).split(",")],
            getattr(args, "turns", 500),
        )


if __name__ == "__main__":
    main()
