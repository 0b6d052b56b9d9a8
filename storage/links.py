"""Short links: the links in a text, each stored under a code, and the visits they get."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from storage.raw import Dialect, Plan, marks
from storage.types import utcnow


@dataclass(frozen=True)
class Followed:
    """A link just followed, with its visits counting this one."""

    code: str
    workspace_id: str
    conversation_id: str | None
    message_id: str | None
    url: str
    clicks: int


def insert_links_plan(
    dialect: Dialect,
    *,
    links: Mapping[str, str],
    workspace_id: str,
    conversation_id: str | None,
    message_id: str | None,
) -> Plan[set[str]]:
    """Store each `code -> url` by one INSERT; the codes stored. A code already taken is
    skipped and left out of the answer, for the caller to draw another."""
    if not links:
        return set()
    stamp = dialect.ts(utcnow())
    params: list[object] = []
    for code, url in links.items():
        params += [code, workspace_id, conversation_id, message_id, url, 0, stamp]
    # Only placeholders are formatted into the statement, never values.
    stored = yield (
        "INSERT INTO short_links (code, workspace_id, conversation_id, message_id, url, clicks, "  # noqa: S608
        f"created_at) VALUES {marks(len(links), 7)} ON CONFLICT (code) DO NOTHING RETURNING code",
        params,
    )
    return {str(row[0]) for row in stored}


def follow_plan(dialect: Dialect, code: str) -> Plan[Followed | None]:
    """Count a visit to `code`, by one UPDATE; the link, or None when no link has that code."""
    found = yield (
        "UPDATE short_links SET clicks = clicks + 1 WHERE code = ? "
        "RETURNING workspace_id, conversation_id, message_id, url, clicks",
        (code,),
    )
    if not found:
        return None
    workspace_id, conversation_id, message_id, url, clicks = found[0]
    return Followed(code, workspace_id, conversation_id, message_id, url, int(clicks))
