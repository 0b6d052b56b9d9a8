"""Every inbox route, gathered from the module of each resource."""

from __future__ import annotations

from webhooks.avochato import calls
from webhooks.routing import Route


def inbox_routes() -> list[Route]:
    return [
        *calls.routes(),
    ]
