"""What every inbox route shares: parameters, credentials, the envelope, ids, pages, times.

- Parameters come from the query string, a JSON body or a form body, merged (the body wins),
  with Rails-style keys nested: `contacts[0][phone]` → `{"contacts": [{"phone": …}]}`,
  `created_at[from]` → `{"created_at": {"from": …}}`.
- `auth_id` + `auth_secret` are a team member's credentials; they act in the member's home
  workspace, or in the one named by `subdomain` when the member belongs to it.
- Answers are `{"status": 200, "data": {…}}` (with `page` where paged); failures keep the
  service's error object inside the same envelope: `{"status": 401, "error": {…}}`.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import select

from agent.errors import DomainError
from agent.workspaces import hash_secret
from storage.engine import SessionFactory
from storage.models import Membership, User, Workspace
from webhooks.errors import HttpError, validation_details
from webhooks.keys import DEPS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Params = dict[str, Any]
PAGE_SIZE = 30
MAX_IDS = 100
PARAMS: web.RequestKey[Params] = web.RequestKey("avochato_params", dict)

_STATUS = {"not_found": 404, "contact_opted_out": 409, "contact_blocked": 409}


@dataclass(frozen=True)
class Caller:
    """Who is asking (a team member with a role), and the workspace the request acts in."""

    user: User
    workspace: Workspace
    membership: Membership


def inbox_route(handler: Handler) -> Handler:
    """Answer failures in the inbox envelope: `{"status": <code>, "error": {…}}`."""

    @functools.wraps(handler)
    async def enveloped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as exc:
            return failure(exc.status, exc.code, exc.message, exc.details, exc.headers)
        except ValidationError as exc:
            details = validation_details(exc)
            fields = ", ".join(d["field"] for d in details)
            return failure(422, "validation_error", f"invalid fields: {fields}", details)
        except DomainError as exc:
            status = _STATUS.get(exc.code, 409 if exc.code != "validation_error" else 422)
            return failure(status, exc.code, exc.message, exc.details)

    return enveloped


def failure(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"status": status, "error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def ok(data: Mapping[str, Any], *, page: int | None = None, **extra: Any) -> web.Response:
    """The success envelope; `page` (and e.g. `limit`) where the route is paged."""
    body: dict[str, Any] = {"status": 200, "data": dict(data)}
    if page is not None:
        body["page"] = page
    body.update(extra)
    return web.json_response(body)


async def params(request: web.Request) -> Params:
    """The request's parameters, from wherever they came, nested (read once a request)."""
    if PARAMS in request:
        return request[PARAMS]
    pairs: list[tuple[str, Any]] = list(request.query.items())
    body: Any = None
    if request.can_read_body:
        if request.content_type == "application/json":
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise HttpError(
                        400, "invalid_json", f"the body is not valid JSON: {exc}"
                    ) from exc
                if not isinstance(body, dict):
                    raise HttpError(400, "invalid_json", "the body must be a JSON object")
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            pairs += [(k, v) for k, v in form.items() if isinstance(v, str)]
    merged = nest(pairs)
    if body is not None:
        # A JSON body may use the same bracketed keys ({"via_field[field]": "email"}).
        bracketed = [(k, v) for k, v in body.items() if "[" in k]
        merged.update({k: v for k, v in body.items() if "[" not in k})
        for key, value in nest(bracketed).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    if _has_nul(merged):
        raise HttpError(422, "validation_error", "a parameter contains the NUL character")
    request[PARAMS] = merged
    return merged


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def nest(pairs: Iterable[tuple[str, Any]]) -> Params:
    """Rails-style keys to nested values; a level whose keys are all numbers becomes a list
    (in the numbers' order), `a[]` appends."""
    root: Params = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: Params = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    nested = _lists(root)
    return nested if isinstance(nested, dict) else {str(i): v for i, v in enumerate(nested)}


def _lists(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _lists(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in str(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def caller(request: web.Request) -> Caller:
    """The team member the credentials belong to, in the workspace the request acts in."""
    p = await params(request)
    auth_id, secret = p.get("auth_id"), p.get("auth_secret")
    if not isinstance(auth_id, str) or not isinstance(secret, str) or not auth_id or not secret:
        raise HttpError(401, "unauthorized", "send auth_id and auth_secret")
    sessions: SessionFactory = request.app[DEPS].reads
    async with sessions() as session:
        user = (await session.exec(select(User).where(User.auth_id == auth_id))).first()
        expected = user.auth_secret_hash if user is not None else None
        if user is None or not hmac.compare_digest(expected or "", hash_secret(secret)):
            raise HttpError(401, "unauthorized", "auth_id and auth_secret do not match")
        subdomain = p.get("subdomain")
        if subdomain:
            workspace = (
                await session.exec(select(Workspace).where(Workspace.subdomain == str(subdomain)))
            ).first()
        else:
            workspace = (
                await session.get(Workspace, user.home_workspace_id)
                if user.home_workspace_id
                else None
            )
        membership = await session.get(Membership, (workspace.id, user.id)) if workspace else None
    if workspace is None or membership is None:
        # Another inbox's name is no different from one that does not exist.
        where = "by that subdomain" if subdomain else "of their own: name one with subdomain"
        raise HttpError(401, "unauthorized", f"these credentials have no inbox {where}")
    if not membership.enabled:
        raise HttpError(401, "unauthorized", "this user is disabled in this inbox")
    return Caller(user, workspace, membership)


def id_list(raw: str, *, name: str = "ids") -> list[str]:
    """`a,b,c` (comma-separated, `%2C` already decoded) → ids, in order, without repeats."""
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not ids:
        raise HttpError(422, "validation_error", f"{name}: give at least one id")
    if len(ids) > MAX_IDS:
        raise HttpError(422, "validation_error", f"{name}: at most {MAX_IDS} ids")
    return ids


def page_number(p: Params) -> int:
    raw = p.get("page", 1)
    try:
        page = int(raw) if raw not in (None, "") else 1
    except (TypeError, ValueError):
        page = 0
    if not 1 <= page <= 100_000:
        raise HttpError(422, "validation_error", "page must be a whole number from 1")
    return page


def truthy(value: Any, *, name: str = "value") -> bool:
    """Avochato's booleans: true/false, 1/0, "true"/"false", "1"/"0" (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise HttpError(422, "validation_error", f"{name} must be true or false (1 or 0)")


def epoch(moment: datetime | None) -> float | None:
    """Times as Avochato writes them: seconds since 1970, with a fraction."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def moment(value: Any, *, name: str) -> datetime | None:
    """A time given as epoch seconds (Avochato's way) or ISO 8601 with an offset."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise HttpError(
            422, "validation_error", f"{name}: give epoch seconds or ISO 8601 with an offset"
        )
    return parsed


def csv(value: Any) -> list[str]:
    """ "red, green,blue" or ["red", "green"] → ["red", "green", "blue"]."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


class Credentials(BaseModel):
    """What every inbox request carries (as query parameters, or in the body)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    auth_id: str = Field(min_length=1, max_length=40, description="Auth Id field")
    auth_secret: str = Field(
        min_length=1, max_length=200, description="Authentication Secret field"
    )
    subdomain: str | None = Field(
        default=None, max_length=63, description="act in another inbox the user belongs to"
    )


class Paged(Credentials):
    page: int = Field(default=1, ge=1, le=100_000, description="Page to request")
