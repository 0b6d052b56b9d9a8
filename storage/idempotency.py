"""Idempotency keys: a POST sent again with the same key gets the first answer, not a second
effect (Stripe's semantics, as the IETF Idempotency-Key draft describes them).

A key is claimed before the request runs and holds its answer once it has one. The same key
with another request is refused; a key whose request is still running is busy; a claim left
by a process that died mid-request lapses after `LOCK` and is taken over; after `KEEP` a key
is forgotten and may be used afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from storage.raw import Dialect, Plan, parse_ts
from storage.types import utcnow

KEEP = timedelta(hours=24)
LOCK = timedelta(seconds=60)


class Claimed(StrEnum):
    NEW = "new"  # run the request; then `finish_plan` (or `release_plan`)
    REPLAY = "replay"  # answer what was answered the first time
    MISMATCH = "mismatch"  # the key was used for another request
    BUSY = "busy"  # the first request is still running


@dataclass(frozen=True)
class Claim:
    outcome: Claimed
    status: int | None = None
    body: str | None = None


def claim_plan(dialect: Dialect, workspace_id: str, key: str, fingerprint: str) -> Plan[Claim]:
    now = utcnow()
    stamp, lock = dialect.ts(now), dialect.ts(now + LOCK)
    added = yield (
        "INSERT INTO idempotency_keys (workspace_id, key, fingerprint, state, locked_until, "
        "created_at) VALUES (?, ?, ?, 'running', ?, ?) "
        "ON CONFLICT (workspace_id, key) DO NOTHING RETURNING key",
        (workspace_id, key, fingerprint, lock, stamp),
    )
    if added:
        return Claim(Claimed.NEW)
    found = yield (
        "SELECT fingerprint, state, locked_until, created_at, response_status, response_body "
        "FROM idempotency_keys WHERE workspace_id = ? AND key = ?"
        + (" FOR UPDATE" if dialect.postgres else ""),
        (workspace_id, key),
    )
    if not found:  # forgotten between the two statements: claim it next time round
        return Claim(Claimed.BUSY)
    kept, state, locked_until, created, status, body = found[0]
    created_at, locked = parse_ts(created), parse_ts(locked_until)
    expired = created_at is not None and created_at < now - KEEP
    lapsed = state == "running" and (locked is None or locked < now)
    if not expired:
        if kept != fingerprint:
            return Claim(Claimed.MISMATCH)
        if state == "done":
            return Claim(Claimed.REPLAY, int(status), str(body))
        if not lapsed:
            return Claim(Claimed.BUSY)
    yield (
        "UPDATE idempotency_keys SET fingerprint = ?, state = 'running', locked_until = ?, "
        "created_at = ?, response_status = NULL, response_body = NULL "
        "WHERE workspace_id = ? AND key = ?",
        (fingerprint, lock, stamp if expired else dialect.ts(created_at), workspace_id, key),
    )
    return Claim(Claimed.NEW)


def finish_plan(
    dialect: Dialect, workspace_id: str, key: str, status: int, body: str
) -> Plan[None]:
    """Keep the answer for replays."""
    yield (
        "UPDATE idempotency_keys SET state = 'done', response_status = ?, response_body = ?, "
        "locked_until = NULL WHERE workspace_id = ? AND key = ?",
        (status, body, workspace_id, key),
    )


def release_plan(dialect: Dialect, workspace_id: str, key: str) -> Plan[None]:
    """Let the key go: the request did not get as far as an answer worth keeping (it was
    refused as invalid, or failed), so the client may send it again, fixed or not."""
    yield (
        "DELETE FROM idempotency_keys WHERE workspace_id = ? AND key = ? AND state = 'running'",
        (workspace_id, key),
    )


def purge_plan(dialect: Dialect, limit: int = 1000) -> Plan[int]:
    """Forget up to `limit` keys older than `KEEP`; how many went."""
    gone = yield (
        "DELETE FROM idempotency_keys WHERE (workspace_id, key) IN (SELECT workspace_id, key "
        "FROM idempotency_keys WHERE created_at < ? LIMIT ?) RETURNING key",
        (dialect.ts(utcnow() - KEEP), limit),
    )
    return len(gone or [])
