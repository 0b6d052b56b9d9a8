"""The REST API for businesses and integrators: start and read conversations."""

from __future__ import annotations

import hashlib
import hmac
import json

from aiohttp import web

from agent.kickoff import start_conversation
from agent.schemas import KickoffRequest, KickoffResult
from agent.transcripts import list_recent, load_conversation
from storage.engine import ping
from storage.raw import Dialect, Plan
from storage.workspaces import find_workspace_by_key_hash
from webhooks.errors import HttpError, read_json
from webhooks.keys import DEPS, KEEP_ANSWER, SETTINGS, WORKSPACE_ID, Keep

_BEARER = {"WWW-Authenticate": 'Bearer realm="smsagent"'}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(request: web.Request) -> str:
    """The workspace the bearer key belongs to (looked up once a request); 401 otherwise."""
    if WORKSPACE_ID in request:
        return request[WORKSPACE_ID]
    settings = request.app[SETTINGS]
    if settings.api_key is None:
        raise HttpError(
            401,
            "api_disabled",
            "the API is off: set SMSAGENT_API_KEY to enable it",
            headers=_BEARER,
        )
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HttpError(
            401, "unauthorized", "send Authorization: Bearer <api key>", headers=_BEARER
        )
    key_hash = hash_api_key(key.strip())
    async with request.app[DEPS].sessions() as session:
        workspace = await find_workspace_by_key_hash(session=session, key_hash=key_hash)
    if workspace is None or not hmac.compare_digest(workspace.api_key_hash or "", key_hash):
        raise HttpError(401, "unauthorized", "the API key is not valid", headers=_BEARER)
    request[WORKSPACE_ID] = workspace.id
    return workspace.id


async def create_conversation(request: web.Request) -> web.Response:
    await authenticate(request)
    kickoff = KickoffRequest.model_validate(await read_json(request))
    keep: Keep | None = request.get(KEEP_ANSWER)
    remember = None
    if keep is not None:
        keeping = keep

        def remember(dialect: Dialect, result: KickoffResult) -> Plan[None]:
            return keeping(dialect, 201, json.dumps(result.model_dump(mode="json")))

    result = await start_conversation(request.app[DEPS], kickoff, remember=remember)
    return web.json_response(result.model_dump(mode="json"), status=201)


async def get_conversation(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    conversation = await load_conversation(
        sessions=request.app[DEPS].sessions,
        conversation_id=request.match_info["conversation_id"],
        workspace_id=workspace_id,
    )
    return web.json_response(conversation.model_dump(mode="json"))


async def list_conversations(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    limit = _bounded(request.query.get("limit"), "limit", default=50, low=1, high=200)
    offset = _bounded(request.query.get("offset"), "offset", default=0, low=0, high=10**9)
    items = await list_recent(
        sessions=request.app[DEPS].sessions, workspace_id=workspace_id, limit=limit, offset=offset
    )
    return web.json_response({"data": [i.model_dump(mode="json") for i in items]})


async def healthz(request: web.Request) -> web.Response:
    await ping(sessions=request.app[DEPS].sessions)
    return web.json_response({"status": "ok"})


def _bounded(raw: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise HttpError(422, "validation_error", f"{name} must be an integer in [{low}, {high}]")
    return value
