"""The scripted model server (`agent.evals.scripted`), runnable as its own process.

``python -m tests.fakes.llm_server --port 0`` prints ``READY http://127.0.0.1:PORT/v1`` and is
scripted through ``/_control/*``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from agent.evals.scripted import ScriptedLLM, Step


async def _serve(llm: ScriptedLLM) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with llm:
        print(f"READY {llm.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, printing ``READY <base_url>`` once listening."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible test server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--script", type=Path, default=None, help="JSON file: list of steps")
    parser.add_argument("--default", default=None, help="JSON step used when the script is empty")
    args = parser.parse_args(argv)
    default = Step.from_json(json.loads(args.default)) if args.default else None
    llm = ScriptedLLM(api_key=args.api_key, default=default, host=args.host, port=args.port)
    if args.script is not None:
        llm.script(*(Step.from_json(s) for s in json.loads(args.script.read_text())))
    asyncio.run(_serve(llm))


if __name__ == "__main__":
    main()
