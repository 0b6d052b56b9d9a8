"""Self-tests: the loopback stubs speak the wire formats real clients expect."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from twilio.request_validator import RequestValidator

from agent.evals.scripted import (
    ScriptedLLM,
    Step,
    error,
    hold,
    last_system_prompt,
    raw_tool_call,
    reply,
    tool_call,
    tool_calls,
    tool_names,
)
from tests.fakes.twilio_server import TwilioStub, num_segments

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("confirm_appointment", "tag_contact")
]


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM(api_key="sk-test") as server:
        yield server


@pytest.fixture
async def client(llm: ScriptedLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


async def test_openai_sdk_gets_scripted_reply_with_usage(
    llm: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    llm.script(reply("Hello there"))
    resp = await client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": "You book haircuts."},  # 18 chars
            {"role": "user", "content": "hi"},  # 2 chars
        ],
    )
    assert resp.choices[0].message.content == "Hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gpt-test"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (20 // 4 + 1, 11 // 4 + 1)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert last_system_prompt(llm.requests[0]) == "You book haircuts."
    # empty script: default step
    again = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": ""}]
    )
    assert again.choices[0].message.content == "OK"


async def test_openai_sdk_gets_tool_calls(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.script(
        tool_calls(("confirm_appointment", {}), ("tag_contact", {"tag": "vip"})),
        tool_call("reschedule", new_start="2030-01-01T10:00"),
        raw_tool_call("no_such_tool", '{"new_start": "not a date"'),
    )
    messages: list[Any] = [{"role": "user", "content": "yes"}]
    first = await client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    assert tool_names(llm.requests[0]) == ["confirm_appointment", "tag_contact"]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls: list[Any] = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["confirm_appointment", "tag_contact"]
    assert json.loads(calls[1].function.arguments) == {"tag": "vip"}
    second = await client.chat.completions.create(model="m", messages=messages)
    third = await client.chat.completions.create(model="m", messages=messages)
    kw_call: Any = (second.choices[0].message.tool_calls or [])[0]
    assert json.loads(kw_call.function.arguments) == {"new_start": "2030-01-01T10:00"}
    raw: Any = (third.choices[0].message.tool_calls or [])[0]
    assert raw.function.name == "no_such_tool"
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.function.arguments)
    ids = [c.id for c in [*calls, kw_call, raw]]
    assert len(set(ids)) == 4
    assert all(i.startswith("call_") for i in ids)


async def test_openai_sdk_errors(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.script(error(500, "model exploded"))
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.InternalServerError, match="model exploded"):
        await client.chat.completions.create(model="m", messages=messages)
    with pytest.raises(openai.BadRequestError, match="stream"):
        await client.chat.completions.create(model="m", messages=messages, stream=True)
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as excinfo:
            await bad.chat.completions.create(model="m", messages=messages)
    assert excinfo.value.code == "invalid_api_key"
    assert llm.pending == 0


async def test_hold_delay_and_dynamic_steps(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.script(
        hold(reply("finally")),
        reply("slow").delayed(0.2),
        lambda req: reply("echo " + req["messages"][-1]["content"]),
    )
    messages: list[Any] = [{"role": "user", "content": "ping"}]
    held = asyncio.create_task(client.chat.completions.create(model="m", messages=messages))
    await llm.wait_for_requests(1)
    await asyncio.sleep(0.05)
    assert not held.done()
    assert llm.held == 1
    llm.release()
    assert (await held).choices[0].message.content == "finally"
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = await client.chat.completions.create(model="m", messages=messages)
    assert slow.choices[0].message.content == "slow"
    assert loop.time() - started >= 0.2
    echo = await client.chat.completions.create(model="m", messages=messages)
    assert echo.choices[0].message.content == "echo ping"
    with pytest.raises(AssertionError, match="expected at least 9"):
        await llm.wait_for_requests(9, timeout=0.05)


def test_steps_round_trip_json() -> None:
    steps: list[Step] = [
        reply("a", delay=0.5),
        tool_calls(("x", {"k": 1}), ("y", "{raw")),
        error(429, "slow down", code="rate_limit_exceeded"),
        hold(reply("b")),
    ]
    for step in steps:
        assert Step.from_json(json.loads(json.dumps(step.to_json()))) == step


async def test_langchain_chat_openai(llm: ScriptedLLM) -> None:
    llm.script(reply("Hi from LangChain"))  # 17 chars
    model = ChatOpenAI(
        base_url=llm.base_url, api_key="sk-test", model="test-model", timeout=5, max_retries=0
    )
    result = await model.ainvoke([HumanMessage("0123456789ab")])  # 12 chars
    assert result.content == "Hi from LangChain"
    assert result.usage_metadata is not None
    assert result.usage_metadata["input_tokens"] == 12 // 4 + 1
    assert result.usage_metadata["output_tokens"] == 17 // 4 + 1
    assert result.usage_metadata["total_tokens"] == 4 + 5
    assert llm.requests[0]["model"] == "test-model"


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStub]:
    async with TwilioStub(auth_token="tok") as stub:
        yield stub


async def _send(stub: TwilioStub, form: dict[str, str], *, bad_auth: bool = False) -> Any:
    secret = "wrong" if bad_auth else stub.auth_token
    headers = {"Authorization": aiohttp.encode_basic_auth(stub.account_sid, secret)}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(stub.messages_url, data=form) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def test_twilio_accepts_valid_send(twilio: TwilioStub) -> None:
    form = {"To": "+15551234567", "From": "+15557654321", "Body": "See you at 3pm"}
    status, body, _ = await _send(twilio, form)
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["status"] == "queued"
    assert body["num_segments"] == "1"
    assert (body["to"], body["from"], body["body"]) == (
        "+15551234567",
        "+15557654321",
        form["Body"],
    )
    assert body["direction"] == "outbound-api"
    await twilio.wait_for_messages(1)
    assert twilio.messages == [{**form, "sid": body["sid"]}]


async def test_twilio_rejections(twilio: TwilioStub) -> None:
    ok = {"To": "+15551234567", "From": "+15557654321", "Body": "hi"}
    status, body, _ = await _send(twilio, ok, bad_auth=True)
    assert (status, body["code"], body["message"]) == (401, 20003, "Authenticate")
    status, body, _ = await _send(twilio, {**ok, "To": "5551234"})
    assert (status, body["code"]) == (400, 21211)
    assert "5551234" in body["message"]
    status, body, _ = await _send(twilio, {**ok, "Body": ""})
    assert (status, body["code"]) == (400, 21602)
    twilio.fail_next(429, 20429, "Too Many Requests", retry_after=1)
    status, body, headers = await _send(twilio, ok)
    assert (status, body["code"], headers.get("Retry-After")) == (429, 20429, "1")
    status, _, _ = await _send(twilio, ok)
    assert status == 201
    assert [r["status"] for r in twilio.requests] == [401, 400, 400, 429, 201]
    assert len(twilio.messages) == 1


@pytest.mark.parametrize(
    ("body", "segments"),
    [("a" * 160, 1), ("a" * 161, 2), ("é" * 160, 1), ("😀" * 35, 1), ("😀" * 36, 2)],
)
def test_num_segments(body: str, segments: int) -> None:
    assert num_segments(body) == segments


async def test_twilio_status_callback_is_signed(twilio: TwilioStub) -> None:
    received: list[tuple[dict[str, str], str]] = []

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        received.append(({k: str(v) for k, v in form.items()}, request.url.human_repr()))
        return web.Response(text="ok")

    _, sent, _ = await _send(twilio, {"To": "+15551234567", "From": "+15557654321", "Body": "x"})
    app = web.Application()
    app.router.add_post("/status", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/status"
    try:
        result = await twilio.send_status_callback(
            url, sent["sid"], "undelivered", error_code=30003
        )
    finally:
        await runner.cleanup()
    assert result == (200, "ok")
    params, _ = received[0]
    assert params["MessageStatus"] == "undelivered"
    assert params["ErrorCode"] == "30003"
    assert params["To"] == "+15551234567"
    signature = RequestValidator("tok").compute_signature(url, params)
    assert RequestValidator("tok").validate(url, params, signature)


@asynccontextmanager
async def _spawn(module: str, *args: str) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=15)).decode().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        yield line.removeprefix("READY ")
    finally:
        if proc.returncode is None:
            proc.terminate()  # SIGTERM to proc.pid
        await asyncio.wait_for(proc.wait(), timeout=10)


async def test_llm_subprocess_control_api() -> None:
    async with _spawn("tests.fakes.llm_server", "--port", "0") as base_url:
        root = base_url.removesuffix("/v1")
        steps = [{"kind": "reply", "text": "from a process"}, {"kind": "hold"}]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{root}/_control/script", json=steps) as resp:
                assert (await resp.json())["pending"] == 2
            async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as c:
                msgs: list[Any] = [{"role": "user", "content": "hi"}]
                first = await c.chat.completions.create(model="m", messages=msgs)
                assert first.choices[0].message.content == "from a process"
                held = asyncio.create_task(c.chat.completions.create(model="m", messages=msgs))
                await asyncio.sleep(0.2)
                assert not held.done()
                async with http.post(f"{root}/_control/release", json={}) as resp:
                    assert resp.status == 200
                assert (await held).choices[0].message.content == "OK"
            async with http.get(f"{root}/_control/requests") as resp:
                recorded = await resp.json()
    assert [r["messages"][0]["content"] for r in recorded] == ["hi", "hi"]


async def test_twilio_subprocess_control_api() -> None:
    sid = "AC" + "1" * 32
    async with (
        _spawn("tests.fakes.twilio_server", "--account-sid", sid, "--auth-token", "t") as url,
        aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(sid, "t")}
        ) as http,
    ):
        form = {"To": "+15551234567", "MessagingServiceSid": "MG" + "0" * 32, "Body": "hey"}
        async with http.post(f"{url}/2010-04-01/Accounts/{sid}/Messages.json", data=form) as r:
            assert r.status == 201
        async with http.get(f"{url}/_control/messages") as r:
            messages = await r.json()
    assert [m["Body"] for m in messages] == ["hey"]
