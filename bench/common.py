"""What the benchmarks share: processes on loopback, signed texts, wrk, and /proc readings."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://bench.example.test"
AUTH_TOKEN = "bench-auth-token"  # noqa: S105 - signs loopback requests only
ACCOUNT_SID = "AC" + "0" * 32
OUR_NUMBER = "+15550000000"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
INBOUND_PATH = "/webhooks/twilio/sms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process on loopback, ended by its own pid whatever happens. Its output is
    dropped, or kept in `$BENCH_LOGS/<module>.<n>.log` when that names a folder."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        output: Any = subprocess.DEVNULL
        folder = os.environ.get("BENCH_LOGS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            name = self.args[1] if len(self.args) > 1 else "process"
            n = len(list(Path(folder).glob(f"{name}.*.log")))
            output = (Path(folder) / f"{name}.{n}.log").open("wb")
        try:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The whole group: `serve --processes N` has children of its own.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def wait_healthy(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing healthy on port {port}")


def serve_env(database_url: str, port: int, **settings: str) -> dict[str, str]:
    env = {
        "SMSAGENT_DATABASE_URL": database_url,
        "SMSAGENT_PORT": str(port),
        "SMSAGENT_SMS_PROVIDER": "twilio",
        "SMSAGENT_PUBLIC_URL": PUBLIC_URL,
        "SMSAGENT_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "SMSAGENT_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SMSAGENT_FROM_NUMBER": OUR_NUMBER,
        "SMSAGENT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    env.update({f"SMSAGENT_{k.upper()}": v for k, v in settings.items()})
    return env


def with_schema(env: dict[str, str], schema: str | None) -> dict[str, str]:
    return {**env, "SMSAGENT_DATABASE_SCHEMA": schema} if schema else env


async def pg_answers() -> bool:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        print("PostgreSQL does not answer; measuring SQLite only")
        return False
    await conn.close()
    return True


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=3)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def signed_texts(
    count: int, *, numbers: int, body: str = "Can I move it to Thursday?"
) -> list[tuple[dict[str, str], str]]:
    """`count` Twilio inbound forms with unique ids from `numbers` customers, and signatures
    computed with Twilio's own code."""
    validator = RequestValidator(AUTH_TOKEN)
    out = []
    for i in range(count):
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "From": f"+1310{5550000 + i % numbers:07d}",
            "To": OUR_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        out.append((params, validator.compute_signature(PUBLIC_URL + INBOUND_PATH, params)))
    return out


async def post_all(
    port: int, texts: list[tuple[dict[str, str], str]], concurrency: int
) -> dict[str, float]:
    """POST every text; when each was acknowledged (by `From`, the last text's time)."""
    acked: dict[str, float] = {}
    queue = list(reversed(texts))

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            params, signature = queue.pop()
            async with http.post(
                f"http://127.0.0.1:{port}{INBOUND_PATH}",
                data=params,
                headers={"X-Twilio-Signature": signature},
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"webhook answered {response.status}")
            acked[params["From"]] = time.monotonic()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return acked


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages ...")
    for command in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"]):
        subprocess.run(command, check=False, capture_output=True)  # noqa: S603
        if command[1] == "update":
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)  # noqa: S607
        if found := shutil.which("wrk"):
            return found
    raise SystemExit("wrk is needed (apt-get install wrk) and could not be installed")


def wrk_script(
    texts: list[tuple[dict[str, str], str]], directory: Path, *, delay_ms: float = 0.0
) -> Path:
    """A wrk Lua script that cycles through the signed texts and prints a parseable result;
    each connection waits `delay_ms` before each request (wrk's `delay`), to pace the load."""
    data = directory / f"inbound-{secrets.token_hex(4)}.txt"
    data.write_text("".join(f"{signature}\t{urlencode(params)}\n" for params, signature in texts))
    path = directory / f"inbound-{secrets.token_hex(4)}.lua"
    path.write_text(
        """local bodies, sigs = {}, {}
for line in io.lines("DATA") do
  local tab = line:find("\t", 1, true)
  sigs[#sigs+1] = line:sub(1, tab - 1)
  bodies[#bodies+1] = line:sub(tab + 1)
end
local i = 0
request = function()
  i = i + 1
  local k = ((i - 1) % #bodies) + 1
  return wrk.format("POST", "PATH", {["Content-Type"]="application/x-www-form-urlencoded",
    ["X-Twilio-Signature"]=sigs[k]}, bodies[k])
end
DELAY_FUNCTION
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.3f %.3f %d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status + summary.errors.timeout))
end
""".replace("PATH", INBOUND_PATH)
        .replace("DATA", str(data))
        .replace(
            "DELAY_FUNCTION",
            f"delay = function() return {delay_ms:.3f} end" if delay_ms > 0 else "",
        )
    )
    return path


def run_wrk(port: int, script: Path, *, seconds: float, connections: int) -> dict[str, float]:
    output = subprocess.run(  # noqa: S603
        [
            ensure_wrk(),
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT"))
    rps, p50, p99, errors = line.split()[1:]
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99), "errors": float(errors)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that still run."""
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


async def twilio_messages(port: int) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/_control/messages") as response,
    ):
        data = await response.json()
    return list(data)


def stubs(model_seconds: float) -> tuple[Process, int, Process, int]:
    """The Twilio stub and a scripted model that answers after `model_seconds`."""
    twilio_port, llm_port = free_port(), free_port()
    twilio = Process(
        [
            "-m",
            "tests.fakes.twilio_server",
            "--port",
            str(twilio_port),
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
        ]
    )
    step = '{"kind": "reply", "text": "Thanks! We will see you then.", "delay": %s}'
    llm = Process(
        [
            "-m",
            "tests.fakes.llm_server",
            "--port",
            str(llm_port),
            "--default",
            step % model_seconds,
        ]
    )
    return twilio, twilio_port, llm, llm_port


def model_settings(twilio_port: int, llm_port: int) -> dict[str, str]:
    return {
        "twilio_api_url": f"http://127.0.0.1:{twilio_port}",
        "llm_base_url": f"http://127.0.0.1:{llm_port}/v1",
        "llm_model": "bench-model",
        "llm_api_key": "sk-bench",
    }
