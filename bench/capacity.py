"""Capacity: N customers text at once and the model takes 2 s per call; `serve` on its
defaults (SQLite, one process). Every customer must be answered exactly once; what counts is
the extra wait: reply time minus the quiet window minus the model's own time. Replies are
timed as they reach the Twilio stub (polled every 50 ms). Peak RSS is the process's VmHWM.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    Process,
    free_port,
    model_settings,
    peak_rss_mb,
    post_all,
    serve_env,
    signed_texts,
    stubs,
    twilio_messages,
    wait_healthy,
)

QUIET_SECONDS = 1.5  # the default


async def run(*, customers: int, model_seconds: float) -> None:
    twilio, twilio_port, llm, llm_port = stubs(model_seconds)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = serve_env(
            f"sqlite:///{Path(tmp) / 'bench.db'}", port, **model_settings(twilio_port, llm_port)
        )
        serve = Process(["-m", "webhooks.cli", "serve"], env)
        try:
            twilio.start()
            llm.start()
            serve.start()
            await wait_healthy(port)
            await asyncio.sleep(1.0)
            texts = signed_texts(customers, numbers=customers)
            acked = await post_all(port, texts, concurrency=100)
            replied: dict[str, float] = {}
            deadline = time.monotonic() + 120
            counts: Counter[str] = Counter()
            while time.monotonic() < deadline:
                messages = await twilio_messages(twilio_port)
                now = time.monotonic()
                counts = Counter(m["To"] for m in messages)
                for to in counts:
                    replied.setdefault(to, now)
                if len(replied) >= customers:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)
            counts = Counter(m["To"] for m in await twilio_messages(twilio_port))
            rss = peak_rss_mb(serve.pid)
        finally:
            serve.stop()
            llm.stop()
            twilio.stop()
    extra = sorted(
        replied[to] - acked[to] - QUIET_SECONDS - model_seconds for to in replied if to in acked
    )
    once = sum(1 for to in acked if counts.get(to) == 1)
    print(f"capacity: {customers} customers at once, model {model_seconds:g} s, serve defaults")
    print(
        f"answered exactly once: {once}/{customers}; more than once: "
        f"{sum(1 for c in counts.values() if c > 1)}; never: {customers - len(replied)}"
    )
    if extra:

        def p(q: float) -> float:
            return extra[min(len(extra) - 1, int(len(extra) * q))]

        print(
            f"extra wait s: p50 {p(0.5):.2f}  p99 {p(0.99):.2f}  max {extra[-1]:.2f}  "
            f"(mean reply {statistics.mean(e + QUIET_SECONDS + model_seconds for e in extra):.2f}"
            f" s = {statistics.mean(extra) / model_seconds + 1:.2f}x the model's time)"
        )
    print(f"peak RSS: {rss:.0f} MB")
    print("target: all answered once, p99 extra wait <= 3 s, peak RSS <= 300 MB")


def main(customers: int, model_seconds: float) -> None:
    asyncio.run(run(customers=customers, model_seconds=model_seconds))
