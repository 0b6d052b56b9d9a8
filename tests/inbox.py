"""Calling the Avochato-compatible inbox API in tests, the ways its clients do."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode

from agent.workspaces import Credentials
from tests.harness import Service

PREFIX = "/compat/avochato"
Via = Literal["query", "json", "form"]


async def inbox(
    service: Service,
    creds: Credentials | tuple[str, str],
    method: str,
    path: str,
    *,
    via: Via | None = None,
    **params: Any,
) -> tuple[int, Any]:
    """`path` as the seed writes it ("/v1/whoami"), with the credentials and `params` sent in
    the query string (GET/DELETE by default), a JSON body (others by default) or a form."""
    auth_id, secret = (
        (creds.avochato_auth_id, creds.avochato_auth_secret)
        if isinstance(creds, Credentials)
        else creds
    )
    values = {"auth_id": auth_id, "auth_secret": secret, **params}
    via = via or ("query" if method in ("GET", "DELETE") else "json")
    url = PREFIX + path
    if via == "query":
        url += ("&" if "?" in url else "?") + urlencode(values, doseq=True)
        status, body, _ = await service.request(method, url, auth=False)
    elif via == "json":
        status, body, _ = await service.request(method, url, json=values, auth=False)
    else:
        status, body, _ = await service.request(method, url, data=values, auth=False)
    return status, body
