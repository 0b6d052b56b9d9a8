"""The native REST API (`/v1`, Bearer key): conversations, messages and templates.

Every handler works inside the workspace of the key: a conversation, message or template of
another workspace is answered 404, exactly as one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from agent import takeover
from agent.errors import Conflict, NotFound
from agent.kickoff import Sent, outgoing_of, send, start_conversation
from agent.outbox import send_key
from agent.schemas import (
    ContactIn,
    ConversationListPage,
    ConversationPatch,
    ConversationQuery,
    ConversationState,
    HumanReply,
    KickoffRequest,
    MessageDetail,
    MessageRequest,
    MessageSent,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
)
from agent.templates import render, variables_of
from agent.transcripts import list_recent, load_conversation
from agent.workspaces import hash_secret
from storage import conversations, events, jobs, messages
from storage.conversations import ConversationFilter
from storage.engine import ping
from storage.models import (
    Conversation,
    Message,
    Template,
)
from storage.raw import Dialect, Plan, in_session
from storage.templates import delete_template, get_template, list_templates, save_template
from storage.types import new_id
from storage.workspaces import find_workspace_by_key_hash
from webhooks.errors import HttpError, read_json
from webhooks.keys import DEPS, KEEP_ANSWER, WORKSPACE_ID, Keep

_BEARER = {"WWW-Authenticate": 'Bearer realm="smsagent"'}


async def authenticate(request: web.Request) -> str:
    """The workspace the bearer key belongs to (looked up once a request); 401 otherwise."""
    if WORKSPACE_ID in request:
        return request[WORKSPACE_ID]
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HttpError(
            401, "unauthorized", "send Authorization: Bearer <api key>", headers=_BEARER
        )
    key_hash = hash_secret(key.strip())
    async with request.app[DEPS].sessions() as session:
        workspace = await find_workspace_by_key_hash(session=session, key_hash=key_hash)
    if workspace is None or not hmac.compare_digest(workspace.api_key_hash or "", key_hash):
        raise HttpError(401, "unauthorized", "the API key is not valid", headers=_BEARER)
    request[WORKSPACE_ID] = workspace.id
    return workspace.id


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def keeper(
    request: web.Request, status: int, shape: Callable[[T], BaseModel]
) -> Callable[[Dialect, T], Plan[None]] | None:
    """With an Idempotency-Key: a `remember` that keeps the answer (`shape` of the result) in
    the transaction that made it; None without one."""
    keep: Keep | None = request.get(KEEP_ANSWER)
    if keep is None:
        return None
    keeping = keep

    def remember(dialect: Dialect, result: T) -> Plan[None]:
        return keeping(dialect, status, json.dumps(shape(result).model_dump(mode="json")))

    return remember


def _as_is(model: M) -> M:
    return model


# Conversations


async def create_conversation(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    kickoff = KickoffRequest.model_validate(await read_json(request))
    deps = request.app[DEPS]
    text = await _text_of(
        request, workspace_id, kickoff.message, kickoff.template, kickoff.variables, kickoff.contact
    )
    result = await start_conversation(
        deps, workspace_id, kickoff, text=text, remember=keeper(request, 201, _as_is)
    )
    return answer(result, 201)


async def get_conversation(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    conversation = await load_conversation(
        sessions=request.app[DEPS].sessions,
        conversation_id=request.match_info["conversation_id"],
        workspace_id=workspace_id,
    )
    return answer(conversation)


async def list_conversations(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    query = ConversationQuery.model_validate(dict(request.query))
    limit = query.limit
    where = ConversationFilter(
        status=query.status,
        mode=query.mode,
        tag=query.tag,
        phone=query.phone,
        updated_since=query.updated_since,
        before=_cursor(query.cursor),
    )
    items = await list_recent(
        sessions=request.app[DEPS].reads, workspace_id=workspace_id, limit=limit + 1, where=where
    )
    page, more = items[:limit], len(items) > limit
    next_cursor = _encode_cursor(page[-1].last_message_at, page[-1].id) if more else None
    return answer(ConversationListPage(data=page, next_cursor=next_cursor))


# What the API changes in a thread is recorded as done through it, by no one named.
_API = takeover.Author(name=None, source="api")


async def update_conversation(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    patch = ConversationPatch.model_validate(await read_json(request))
    deps = request.app[DEPS]
    async with deps.sessions() as session, session.begin():
        conversation = await _own_conversation(session, request, workspace_id)
        await takeover.change_state(
            session, conversation, status=patch.status, mode=patch.mode, author=_API
        )
        await session.refresh(conversation)
        state = ConversationState.model_validate(conversation, from_attributes=True)
    return answer(state)


async def reply_in_conversation(request: web.Request) -> web.Response:
    """A person's reply: sent now (a reply in a live exchange is never held), and the agent
    stays silent in the thread until it is handed back."""
    workspace_id = await authenticate(request)
    reply = HumanReply.model_validate(await read_json(request))
    deps = request.app[DEPS]
    remember = keeper(request, 201, _as_is)
    async with deps.sessions() as session, session.begin():
        conversation = await _own_conversation(session, request, workspace_id)
        conversation_id = conversation.id
        queued = await takeover.reply(
            session,
            deps.settings,
            conversation,
            text=reply.message,
            author=takeover.Author(name=reply.author_name, source="api"),
            origin="v1",
            media_urls=reply.media_urls,
        )
        result = MessageSent(
            message_id=queued.message.id,
            conversation_id=conversation_id,
            status=queued.message.status,
            segments=queued.message.segments,
            cost_cents=None,
        )
        if remember is not None:
            keep = remember
            await in_session(session, lambda d: keep(d, result))
    deps.nudge()
    return answer(result, 201)


# Messages


async def create_message(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    body = MessageRequest.model_validate(await read_json(request))
    text = await _text_of(
        request, workspace_id, body.message, body.template, body.variables, body.contact
    )
    sent = await send(
        request.app[DEPS],
        workspace_id,
        outgoing_of(body, text, new_thread=False),
        remember=keeper(request, 201, _message_sent),
    )
    return answer(_message_sent(sent), 201)


def _message_sent(sent: Sent) -> MessageSent:
    return MessageSent(
        message_id=sent.message_id,
        conversation_id=sent.conversation_id,
        status=sent.status,
        segments=sent.segments,
        cost_cents=sent.cost_cents,
        send_at=sent.send_at,
    )


async def get_message(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    async with request.app[DEPS].reads() as session:
        message = await _own_message(session, request, workspace_id)
        return answer(MessageDetail.model_validate(message, from_attributes=True))


async def cancel_message(request: web.Request) -> web.Response:
    """Cancel a scheduled message; one that has gone (or is going) is 409."""
    workspace_id = await authenticate(request)
    async with request.app[DEPS].sessions() as session, session.begin():
        message = await _own_message(session, request, workspace_id)
        message_id, conversation_id = message.id, message.conversation_id
        canceled = await in_session(
            session, lambda d: _cancel_plan(d, workspace_id, conversation_id, message_id)
        )
        if not canceled:
            raise Conflict(
                f"the message is {message.status}: only a scheduled message can be canceled",
                code="message_not_scheduled",
            )
        await session.refresh(message)
        detail = MessageDetail.model_validate(message, from_attributes=True)
    return answer(detail)


def _cancel_plan(
    dialect: Dialect, workspace_id: str, conversation_id: str, message_id: str
) -> Plan[bool]:
    if not (yield from messages.cancel_scheduled_plan(dialect, message_id)):
        return False
    yield from jobs.cancel_queued_plan(dialect, send_key(message_id))
    yield from events.event_plan(
        dialect,
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        type="message.canceled",
        data={"message_id": message_id},
    )
    return True


# Media


async def get_media(request: web.Request) -> web.StreamResponse:
    """A photo or other file a customer texted, as it was kept, streamed with its type."""
    workspace_id = await authenticate(request)
    deps = request.app[DEPS]
    media_id = request.match_info["media_id"]
    if deps.media is None:
        raise NotFound(f"no media {media_id}")
    async with deps.media.open_kept(
        sessions=deps.reads, workspace_id=workspace_id, media_id=media_id
    ) as (item, pieces):
        # What a customer sent is never run as a page of this origin, whatever it claims to be.
        response = web.StreamResponse(
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
                "Cache-Control": "private, max-age=3600",
            }
        )
        response.content_type = item.content_type or "application/octet-stream"
        response.content_length = item.size_bytes
        await response.prepare(request)
        async for piece in pieces:
            await response.write(piece)
    await response.write_eof()
    return response


# Templates


async def list_workspace_templates(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    async with request.app[DEPS].reads() as session:
        found = await list_templates(session=session, workspace_id=workspace_id)
    return answer(TemplateList(data=[_template_out(t) for t in found]))


async def create_template(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    body = TemplateIn.model_validate(await read_json(request))
    template_id = body.id or new_id("tmpl")
    async with request.app[DEPS].sessions() as session, session.begin():
        if await get_template(session=session, workspace_id=workspace_id, template_id=template_id):
            raise Conflict(f"template {template_id} exists; PUT to change it", code="exists")
        template, _ = await save_template(
            session=session,
            workspace_id=workspace_id,
            template_id=template_id,
            name=body.name,
            body=body.body,
        )
        out = _template_out(template)
    return answer(out, 201)


async def get_workspace_template(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    async with request.app[DEPS].reads() as session:
        template = await get_template(
            session=session,
            workspace_id=workspace_id,
            template_id=request.match_info["template_id"],
        )
    if template is None:
        raise NotFound(f"no template {request.match_info['template_id']}")
    return answer(_template_out(template))


async def update_template(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    body = TemplateUpdate.model_validate(await read_json(request))
    template_id = request.match_info["template_id"]
    async with request.app[DEPS].sessions() as session, session.begin():
        if not await get_template(
            session=session, workspace_id=workspace_id, template_id=template_id
        ):
            raise NotFound(f"no template {template_id}")
        template, _ = await save_template(
            session=session,
            workspace_id=workspace_id,
            template_id=template_id,
            name=body.name,
            body=body.body,
        )
        out = _template_out(template)
    return answer(out)


async def remove_template(request: web.Request) -> web.Response:
    workspace_id = await authenticate(request)
    template_id = request.match_info["template_id"]
    async with request.app[DEPS].sessions() as session, session.begin():
        if not await delete_template(
            session=session, workspace_id=workspace_id, template_id=template_id
        ):
            raise NotFound(f"no template {template_id}")
    return web.Response(status=204)


def _template_out(template: Template) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        body=template.body,
        variables=variables_of(template.body),
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def healthz(request: web.Request) -> web.Response:
    await ping(sessions=request.app[DEPS].sessions)
    return web.json_response({"status": "ok"})


# Helpers


async def _text_of(
    request: web.Request,
    workspace_id: str,
    message: str | None,
    template_id: str | None,
    variables: dict[str, Any],
    contact: ContactIn,
) -> str:
    """The text to send: the message, or the template filled from the variables (and the
    contact's names, for `{first_name}` / `{last_name}`)."""
    if template_id is None:
        assert message is not None
        return message
    async with request.app[DEPS].reads() as session:
        template = await get_template(
            session=session, workspace_id=workspace_id, template_id=template_id
        )
    if template is None:
        raise NotFound(f"no template {template_id}")
    known = {"first_name": contact.first_name, "last_name": contact.last_name, **variables}
    return render(template.body, known)


async def _own_conversation(session: Any, request: web.Request, workspace_id: str) -> Conversation:
    conversation_id = request.match_info["conversation_id"]
    conversation = await conversations.get_conversation(
        session=session, conversation_id=conversation_id, workspace_id=workspace_id
    )
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id}")
    assert isinstance(conversation, Conversation)
    return conversation


async def _own_message(session: Any, request: web.Request, workspace_id: str) -> Message:
    message_id = request.match_info["message_id"]
    message = await messages.get_message(session=session, message_id=message_id)
    if message is None or message.workspace_id != workspace_id:
        raise NotFound(f"no message {message_id}")
    assert isinstance(message, Message)
    return message


def _encode_cursor(moment: datetime, ident: str) -> str:
    raw = f"{moment.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(raw: str | None) -> tuple[datetime, str] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        stamp, ident = text.split("|", 1)
        moment = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HttpError(422, "validation_error", "cursor is not one this API gave out") from None
    if moment.tzinfo is None:
        raise HttpError(422, "validation_error", "cursor is not one this API gave out")
    return moment, ident
