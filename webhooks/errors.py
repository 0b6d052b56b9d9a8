"""One middleware turns every failure into `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agent.errors import Blocked, Conflict, DomainError, InvalidInput, NotFound, OptedOut

log = logging.getLogger("smsagent.http")

_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    OptedOut: 409,
    Blocked: 409,
    InvalidInput: 422,
    Conflict: 409,
}


class HttpError(Exception):
    """An error the edge itself raises (bad JSON, bad signature, no credentials)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def json_error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Each bad field by its dotted path in the request ("contact.email", "to")."""
    details = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(p) for p in error["loc"] if p != "__root__")
        message = error["msg"].removeprefix("Value error, ")
        details.append({"field": path.replace("from_", "from") or "body", "message": message})
    return details


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except HttpError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except ValidationError as exc:
        details = validation_details(exc)
        fields = ", ".join(d["field"] for d in details)
        return json_error(422, "validation_error", f"invalid fields: {fields}", details)
    except DomainError as exc:
        return json_error(_STATUS.get(type(exc), 400), exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, _slug(exc.reason), exc.reason, headers=_allow(exc))
    except Exception:
        log.exception("http.unhandled method=%s path=%s", request.method, request.path)
        return json_error(500, "internal_error", "something went wrong; it has been logged")


async def read_json(request: web.Request) -> Any:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if nul := _nul_at(body, ""):
        # No text message or name holds one, and PostgreSQL text cannot: refuse it here.
        raise HttpError(
            422,
            "validation_error",
            f"invalid fields: {nul}",
            details=[{"field": nul, "message": "must not contain the NUL character (\\u0000)"}],
        )
    return body


def _nul_at(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) holding U+0000, if any."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner
            if found := _nul_at(item, inner):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _nul_at(item, f"{path}.{index}" if path else str(index)):
                return found
    return None


def _slug(reason: str) -> str:
    return reason.lower().replace(" ", "_")


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None
