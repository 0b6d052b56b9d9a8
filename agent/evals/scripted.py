"""A scripted OpenAI-compatible chat-completions server on loopback.

It stands in for a model wherever the answers must be known in advance: `smsagent eval
--scripted` plays each scenario's reference answers through it, and the tests script it step
by step. In process::

    async with ScriptedLLM() as llm:
        llm.script(reply("Hello!"), tool_call("tag_contact", tag="vip"), error(500, "boom"))
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test")

From another process it is scripted through ``/_control/*`` with the JSON form of the same
steps (``Step.to_json`` / ``Step.from_json``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeAlias

from aiohttp import web

JSONDict: TypeAlias = dict[str, Any]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class Step:
    """One scripted answer; ``delay`` seconds pass before it is sent."""

    kind: ClassVar[str] = ""
    delay: float = field(default=0.0, kw_only=True)

    def delayed(self, seconds: float) -> Self:
        """Return a copy of this step that waits ``seconds`` before answering."""
        return dataclasses.replace(self, delay=seconds)

    def to_json(self) -> JSONDict:
        """The control-API form of this step: ``{"kind": ..., <its fields>}``."""
        data: JSONDict = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Step):
                value = value.to_json()
            elif f.name == "calls":
                value = [dataclasses.asdict(call) for call in value]
            data[f.name] = value
        return data

    @staticmethod
    def from_json(data: JSONDict) -> Step:
        """Build a step from its control-API form (``{"kind": ..., ...}``)."""
        kind = data.get("kind")
        delay = float(data.get("delay", 0.0))
        if kind == "reply":
            return Reply(str(data["text"]), delay=delay)
        if kind == "tool_calls":
            calls = tuple(ToolCall(str(c["name"]), c.get("arguments", {})) for c in data["calls"])
            return ToolCalls(calls, delay=delay)
        if kind == "error":
            return Error(
                int(data["status"]),
                str(data["message"]),
                error_type=data.get("error_type", data.get("type")),
                code=data.get("code"),
                delay=delay,
            )
        if kind == "hold":
            then = data.get("then")
            return Hold(Step.from_json(then) if then else None, delay=delay)
        raise ValueError(f"unknown step kind: {kind!r}")


@dataclass(frozen=True)
class Reply(Step):
    """An assistant message with text content (finish_reason ``stop``)."""

    kind: ClassVar[str] = "reply"
    text: str


@dataclass(frozen=True)
class ToolCall:
    """One function call; ``arguments`` is a dict (JSON-encoded) or a raw string sent as is."""

    name: str
    arguments: JSONDict | str = field(default_factory=dict)

    @property
    def arguments_text(self) -> str:
        """The ``arguments`` string as it appears on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class ToolCalls(Step):
    """An assistant message with ``tool_calls`` (content null, finish_reason ``tool_calls``)."""

    kind: ClassVar[str] = "tool_calls"
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Error(Step):
    """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""

    kind: ClassVar[str] = "error"
    status: int
    message: str
    error_type: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Hold(Step):
    """Block until ``ScriptedLLM.release()``, then answer ``then`` (or the default step)."""

    kind: ClassVar[str] = "hold"
    then: Step | None = None


DynamicStep: TypeAlias = Callable[[JSONDict], Step]
StepLike: TypeAlias = Step | DynamicStep


def reply(text: str, *, delay: float = 0.0) -> Reply:
    """Assistant text reply."""
    return Reply(text, delay=delay)


def tool_call(name: str, arguments: JSONDict | None = None, /, **kwargs: Any) -> ToolCalls:
    """One tool call: ``tool_call("tag_contact", tag="vip")`` or ``tool_call(name, {...})``."""
    return ToolCalls((ToolCall(name, {**(arguments or {}), **kwargs}),))


def tool_calls(*calls: tuple[str, JSONDict | str], delay: float = 0.0) -> ToolCalls:
    """Several tool calls in one message: ``tool_calls(("a", {}), ("b", {"x": 1}))``."""
    return ToolCalls(tuple(ToolCall(name, args) for name, args in calls), delay=delay)


def raw_tool_call(name: str, raw_arguments: str, *, delay: float = 0.0) -> ToolCalls:
    """A tool call whose ``arguments`` string is sent verbatim (garbage JSON, any name)."""
    return ToolCalls((ToolCall(name, raw_arguments),), delay=delay)


def error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    delay: float = 0.0,
) -> Error:
    """HTTP ``status`` with an OpenAI-style error body."""
    return Error(status, message, error_type=error_type, code=code, delay=delay)


def hold(then: Step | None = None, *, delay: float = 0.0) -> Hold:
    """Keep the request open until ``llm.release()``; then answer ``then``."""
    return Hold(then, delay=delay)


def _text_of(content: Any) -> str:
    """The text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_system_prompt(request: JSONDict) -> str:
    """Content of the last ``system``/``developer`` message of a recorded request, or ""."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") in ("system", "developer"):
            return _text_of(message.get("content"))
    return ""


def tool_names(request: JSONDict) -> list[str]:
    """Names of the tools offered in a recorded request (``tools[].function.name``)."""
    return [str(t["function"]["name"]) for t in request.get("tools") or [] if "function" in t]


def _error_response(
    status: int, message: str, error_type: str | None, code: str | None
) -> web.Response:
    kind = error_type or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


class ScriptedLLM:
    """Loopback OpenAI-compatible server answering from a FIFO script of steps."""

    last_system_prompt = staticmethod(last_system_prompt)
    tool_names = staticmethod(tool_names)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Step | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        respond: DynamicStep | None = None,
    ) -> None:
        self.api_key = api_key
        self.default: Step = default if default is not None else Reply("OK")
        # Answers every request the queue does not (before `default`), from the request itself.
        self.respond = respond
        self.requests: list[JSONDict] = []
        self.host = host
        self.port = port
        self._queue: deque[StepLike] = deque()
        self._changed = asyncio.Event()
        self._release = asyncio.Semaphore(0)
        self._held = 0
        self._stopping = False
        self._seq = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and start serving (``port=0`` picks a free port)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/_control/script", self._control_script)
        app.router.add_post("/_control/release", self._control_release)
        app.router.add_post("/_control/default", self._control_default)
        app.router.add_get("/_control/requests", self._control_requests)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Release held requests and shut the server down."""
        self._stopping = True
        for _ in range(self._held):
            self._release.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — pass as ``base_url`` to OpenAI clients."""
        if self._runner is None:
            raise RuntimeError("ScriptedLLM is not started")
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *steps: StepLike) -> None:
        """Append steps (or ``request_json -> Step`` callables) to the answer queue."""
        self._queue.extend(steps)

    def release(self, count: int = 1) -> None:
        """Let ``count`` held requests (current or future) proceed."""
        for _ in range(count):
            self._release.release()

    @property
    def pending(self) -> int:
        """Number of scripted steps not yet consumed."""
        return len(self._queue)

    @property
    def held(self) -> int:
        """Number of requests currently blocked on a ``hold()`` step."""
        return self._held

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until at least ``n`` chat requests were received."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.requests) < n:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"ScriptedLLM: expected at least {n} chat request(s) within {timeout}s, "
                f"got {len(self.requests)}"
            ) from None

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except json.JSONDecodeError as exc:
            return _error_response(400, f"Invalid JSON body: {exc}", None, None)
        if not isinstance(body, dict):
            return _error_response(400, "Request body must be a JSON object", None, None)
        self.requests.append(body)
        self._changed.set()
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            msg = "Incorrect API key provided."
            return _error_response(401, msg, "invalid_request_error", "invalid_api_key")
        if body.get("stream"):
            msg = "Streaming is not supported by this server; send stream=false."
            return _error_response(400, msg, "invalid_request_error", "unsupported_parameter")
        item = self._queue.popleft() if self._queue else self.respond or self.default
        step = item if isinstance(item, Step) else item(body)
        return await self._answer(step, body)

    async def _answer(self, step: Step, body: JSONDict) -> web.Response:
        if step.delay > 0:
            await asyncio.sleep(step.delay)
        if isinstance(step, Hold):
            if not self._stopping:
                self._held += 1
                try:
                    await self._release.acquire()
                finally:
                    self._held -= 1
            return await self._answer(step.then or self.default, body)
        if isinstance(step, Error):
            return _error_response(step.status, step.message, step.error_type, step.code)
        return web.json_response(self._completion(step, body))

    def _completion(self, step: Step, body: JSONDict) -> JSONDict:
        message: JSONDict = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(step, Reply):
            message["content"] = step.text
            finish, produced = "stop", step.text
        elif isinstance(step, ToolCalls):
            calls = []
            for call in step.calls:
                self._seq += 1
                function = {"name": call.name, "arguments": call.arguments_text}
                calls.append(
                    {"id": f"call_{self._seq:06d}", "type": "function", "function": function}
                )
            message["tool_calls"] = calls
            finish, produced = "tool_calls", "".join(c.arguments_text for c in step.calls)
        else:
            raise TypeError(f"cannot answer with step {step!r}")
        prompt_chars = sum(len(_text_of(m.get("content"))) for m in body.get("messages", []))
        prompt_tokens = prompt_chars // 4 + 1
        completion_tokens = len(produced) // 4 + 1
        self._seq += 1
        return {
            "id": f"chatcmpl-{self._seq:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "test-model")),
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        }

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": "test-model", "object": "model", "created": 0, "owned_by": "scripted"}
        return web.json_response({"object": "list", "data": [model]})

    async def _control_script(self, request: web.Request) -> web.Response:
        data = await request.json()
        steps = data["steps"] if isinstance(data, dict) else data
        self.script(*(Step.from_json(s) for s in steps))
        return web.json_response({"pending": self.pending})

    async def _control_release(self, request: web.Request) -> web.Response:
        data = json.loads(await request.text() or "{}")
        self.release(int(data.get("count", 1)) if isinstance(data, dict) else 1)
        return web.json_response({"held": self.held})

    async def _control_default(self, request: web.Request) -> web.Response:
        self.default = Step.from_json(await request.json())
        return web.json_response({"default": self.default.to_json()})

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)
