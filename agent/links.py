"""Short links in texts: each web link becomes `PUBLIC_URL/l/<code>`, and following one counts
the visit and records it on the conversation.

A short link keeps a text within fewer segments and tells the business who opened what. The
visit is recorded as the event `link.clicked` with the link's code and message, never its URL:
a URL may carry what the business put in it (names, booking tokens).
"""

from __future__ import annotations

import logging
import re
import secrets
import string

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.events import event_plan
from storage.links import Followed, follow_plan, insert_links_plan
from storage.raw import Dialect, Plan, commit_plan

log = logging.getLogger("smsagent.links")

CODE_LENGTH = 8
_ALPHABET = string.digits + string.ascii_letters
# A code as the path may carry one: base62, no longer than the column.
CODE = re.compile(r"[0-9A-Za-z]{1,16}")
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# Punctuation that ends a sentence or a clause rather than the link it follows.
_TRAILING = ".,)!?"


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


def shorten_plan(
    dialect: Dialect,
    *,
    text: str,
    workspace_id: str,
    conversation_id: str | None,
    message_id: str | None,
    public_url: str,
) -> Plan[str]:
    """Replace each http(s) link in `text` with `{public_url}/l/{code}`, storing every link once
    (the same URL twice shares a code); the new text. Links already short are left alone."""
    prefix = f"{public_url.rstrip('/')}/l/"
    spans: list[tuple[int, int, str]] = []
    for match in _URL.finditer(text):
        url = _trim(match.group())
        if not url.partition("://")[2] or url.startswith(prefix):
            continue
        spans.append((match.start(), match.start() + len(url), url))
    if not spans:
        return text
    codes: dict[str, str] = {}
    waiting = list(dict.fromkeys(url for _, _, url in spans))
    while waiting:
        drawn = {new_code(): url for url in waiting}
        stored = yield from insert_links_plan(
            dialect,
            links=drawn,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            message_id=message_id,
        )
        codes.update({drawn[code]: code for code in stored})
        waiting = [url for url in waiting if url not in codes]
    pieces: list[str] = []
    end = 0
    for start, stop, url in spans:
        pieces += [text[end:start], prefix, codes[url]]
        end = stop
    pieces.append(text[end:])
    return "".join(pieces)


def _trim(url: str) -> str:
    """The link without the punctuation after it; a `)` stays when it closes a `(` in the link
    (`https://en.wikipedia.org/wiki/Mercury_(planet)`)."""
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def follow_link_plan(dialect: Dialect, code: str) -> Plan[Followed | None]:
    """Count the visit and, for a link sent in a conversation, record `link.clicked` on it."""
    followed = yield from follow_plan(dialect, code)
    if followed is not None and followed.conversation_id is not None:
        yield from event_plan(
            dialect,
            workspace_id=followed.workspace_id,
            conversation_id=followed.conversation_id,
            type="link.clicked",
            data={"code": code, "message_id": followed.message_id, "clicks": followed.clicks},
        )
    return followed


async def follow_link(engine: AsyncEngine, code: str) -> str | None:
    """Where the short link `code` leads, its visit counted and recorded; None when unknown."""
    if not CODE.fullmatch(code):
        return None
    dialect = Dialect(engine.dialect.name)
    followed = await commit_plan(engine, follow_link_plan(dialect, code), urgent=True)
    if followed is None:
        return None
    log.info(
        "link.clicked code=%s conversation_id=%s message_id=%s clicks=%d",
        code,
        followed.conversation_id,
        followed.message_id,
        followed.clicks,
    )
    return followed.url
