"""Turns: how many turns a process runs per second with a model that answers at once, and how
much of our own CPU each costs (load, prompt, LangChain, composer, outbox, send, persist).

Texts from N customers are accepted first (the quiet window keeps their turns waiting); then
the turns run and the clock stops when the Twilio stub holds N replies. Baseline in the same
run: a bare LangChain `create_agent` over `ChatOpenAI` calling the same stub, i.e. what the
model client alone costs per call in this process.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from langchain.agents import create_agent
from langchain.agents.middleware import InputAgentState
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from bench.common import (
    PG_DSN,
    Process,
    cpu_seconds,
    drop_schema,
    free_port,
    model_settings,
    pg_answers,
    post_all,
    serve_env,
    signed_texts,
    stubs,
    twilio_messages,
    wait_healthy,
    with_schema,
)

QUIET_SECONDS = 4.0


async def measure(
    url: str, schema: str | None, *, turns: int, processes: int = 1
) -> tuple[float, float]:
    """(turns per second, CPU ms per turn) for one `serve` layout."""
    twilio, twilio_port, llm, llm_port = stubs(0)
    port = free_port()
    env = serve_env(
        url,
        port,
        turn_quiet_seconds=str(QUIET_SECONDS),
        **model_settings(twilio_port, llm_port),
    )
    serve = Process(
        ["-m", "webhooks.cli", "serve", "--processes", str(processes)], with_schema(env, schema)
    )
    try:
        twilio.start()
        llm.start()
        serve.start()
        await wait_healthy(port)
        await asyncio.sleep(1.0)
        accepted_at = time.monotonic()
        await post_all(port, signed_texts(turns, numbers=turns), concurrency=32)
        due = accepted_at + QUIET_SECONDS
        await asyncio.sleep(max(0.0, due - time.monotonic() - 0.2))
        cpu_before = cpu_seconds(serve.pid)
        started = time.monotonic()
        while len(await twilio_messages(twilio_port)) < turns:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - max(started, due)
        cpu = cpu_seconds(serve.pid) - cpu_before
    finally:
        serve.stop()
        llm.stop()
        twilio.stop()
    return turns / elapsed, cpu / turns * 1000


async def bare_langchain(calls: int) -> tuple[float, float]:
    """(calls per second, CPU ms per call) of LangChain's agent alone against the stub."""
    _, _, llm, llm_port = stubs(0)
    llm.start()
    try:
        await asyncio.sleep(1.0)
        model = ChatOpenAI(
            model="bench-model",
            base_url=f"http://127.0.0.1:{llm_port}/v1",
            api_key=SecretStr("sk-bench"),
            timeout=10,
            max_retries=0,
        )
        agent = create_agent(model, [], system_prompt="You text for a dental office.")
        question = InputAgentState(messages=[HumanMessage("Can I move it to Thursday?")])
        for _ in range(10):
            await agent.ainvoke(question, version="v1")
        started, cpu = time.monotonic(), time.process_time()
        limit = asyncio.Semaphore(32)

        async def one() -> None:
            async with limit:
                await agent.ainvoke(question, version="v1")

        await asyncio.gather(*(one() for _ in range(calls)))
        return calls / (time.monotonic() - started), (time.process_time() - cpu) / calls * 1000
    finally:
        llm.stop()


async def run(*, turns: int, postgres: bool) -> None:
    base_rate, base_cpu = await bare_langchain(turns)
    print(f"turns: {turns} customers, zero-latency scripted model, one process")
    print(f"{'target':<22}{'turns/s':>9}{'CPU ms/turn':>13}{'CPU vs bare LangChain':>23}")
    print(f"{'bare LangChain call':<22}{base_rate:>9.0f}{base_cpu:>13.2f}{1:>22.2f}x")
    schemas: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            layouts: list[tuple[str, str, str | None]] = [
                ("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", None)
            ]
            if postgres and await pg_answers():
                schemas.append(f"bench_{secrets.token_hex(4)}")
                layouts.append(("postgresql", PG_DSN, schemas[-1]))
            for name, url, schema in layouts:
                rate, cpu = await measure(url, schema, turns=turns)
                print(f"{name:<22}{rate:>9.0f}{cpu:>13.2f}{cpu / base_cpu:>22.2f}x")
    finally:
        for schema in schemas:
            await drop_schema(schema)
    print("target: <= 10 ms of our own CPU per turn, >= 100 turns/s on one process")


def main(turns: int, postgres: bool) -> None:
    asyncio.run(run(turns=turns, postgres=postgres))
