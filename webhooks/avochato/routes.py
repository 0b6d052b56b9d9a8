"""Every inbox route, gathered from the module of each resource."""

from __future__ import annotations

from webhooks.avochato import (
    accounts,
    broadcasts,
    calls,
    campaigns,
    contacts,
    events,
    messages,
    tags,
    tickets,
    users,
)
from webhooks.routing import Route


def inbox_routes() -> list[Route]:
    return [
        *calls.routes(),
        *accounts.routes(),
        *users.routes(),
        *campaigns.routes(),
        *contacts.routes(),
        *tags.routes(),
        *tickets.routes(),
        *events.routes(),
        *messages.routes(),
        *broadcasts.routes(),
    ]
