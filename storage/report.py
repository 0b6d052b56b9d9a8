"""How the agent is doing over a period: volume, outcomes, delivery, cost and the model.

Read-only aggregate SQL on both databases: each query groups in the database and hands back a
few rows, per day where there is a daily series. Only turn latencies come back one per run,
for the percentiles. Days are calendar days in the zone asked for, bucketed in SQL by their
UTC boundaries (computed here, so a day that crosses a DST change is still 23 or 25 hours).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.raw import Dialect, rows

CONFIRMED = ("appointment.confirmed",)
MOVED = ("appointment.rescheduled", "appointment.reschedule_requested")
CANCELED = ("appointment.canceled",)
HANDOFF = ("conversation.handoff",)
OPTED_OUT = ("contact.opted_out",)
# Runs of the model that ended without a reply the customer got.
FALLBACK_OUTCOMES = ("no_reply", "step_limit", "unbacked_claim", "error")
# Outbound texts not (yet) handed to a carrier: not sent, not counted, not billed.
_UNSENT = ("scheduled", "canceled")
_DELIVERY = ("delivered", "undelivered", "failed")


@dataclass(frozen=True)
class Day:
    day: date
    inbound: int = 0
    outbound: int = 0
    confirmations: int = 0
    moves: int = 0
    cancellations: int = 0
    handoffs: int = 0
    opt_outs: int = 0


@dataclass(frozen=True)
class Reason:
    reason: str
    count: int


@dataclass(frozen=True)
class Failure:
    error_code: str
    error_message: str | None
    count: int


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    zone: str
    workspace_id: str | None
    conversations_started: int = 0
    conversations_active: int = 0
    inbound: int = 0
    outbound: int = 0
    # Outbound texts by who wrote them: agent, human, system, api.
    by_author: dict[str, int] = field(default_factory=dict)
    confirmations: int = 0
    moves: int = 0
    cancellations: int = 0
    handoffs: int = 0
    handoff_reasons: tuple[Reason, ...] = ()
    opt_outs: int = 0
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0
    failures: tuple[Failure, ...] = ()
    segments: int = 0
    cost_cents: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    runs: int = 0
    model_runs: int = 0
    latency_p50_ms: int | None = None
    latency_p95_ms: int | None = None
    fallbacks: int = 0
    corrections: int = 0
    days: tuple[Day, ...] = ()

    @property
    def delivery_rate(self) -> float | None:
        return _rate(self.delivered, self.delivered + self.undelivered + self.failed)

    @property
    def fallback_rate(self) -> float | None:
        return _rate(self.fallbacks, self.model_runs)

    @property
    def correction_rate(self) -> float | None:
        return _rate(self.corrections, self.model_runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "period": {
                "since": self.since.isoformat(),
                "until": self.until.isoformat(),
                "zone": self.zone,
                "workspace_id": self.workspace_id,
            },
            "conversations": {
                "started": self.conversations_started,
                "active": self.conversations_active,
            },
            "texts": {
                "received": self.inbound,
                "sent": self.outbound,
                "by_author": dict(self.by_author),
            },
            "outcomes": {
                "confirmations": self.confirmations,
                "moves": self.moves,
                "cancellations": self.cancellations,
                "handoffs": self.handoffs,
                "opt_outs": self.opt_outs,
            },
            "handoff_reasons": [asdict(r) for r in self.handoff_reasons],
            "delivery": {
                "delivered": self.delivered,
                "undelivered": self.undelivered,
                "failed": self.failed,
                "rate": _rounded(self.delivery_rate),
                "failures": [asdict(f) for f in self.failures],
            },
            "cost": {"segments": self.segments, "cost_cents": self.cost_cents},
            "agent": {
                "runs": self.runs,
                "model_runs": self.model_runs,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
                "fallbacks": self.fallbacks,
                "fallback_rate": _rounded(self.fallback_rate),
                "corrections": self.corrections,
                "correction_rate": _rounded(self.correction_rate),
            },
            "daily": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
        }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def percentile(values: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile of sorted `values`: the smallest value at least `share` of
    them are at or under (so always one that was measured)."""
    if not values:
        return None
    return values[max(math.ceil(share * len(values)), 1) - 1]


def calendar(since: datetime, until: datetime, zone: str) -> list[tuple[date, datetime]]:
    """Every day in `zone` that [since, until) touches, with the moment (UTC) the next begins."""
    tz = ZoneInfo(zone)
    first = since.astimezone(tz).date()
    last = (until - timedelta(microseconds=1)).astimezone(tz).date()
    days = []
    day = first
    while day <= last:
        next_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
        days.append((day, next_day.astimezone(UTC)))
        day += timedelta(days=1)
    return days


class _Period:
    """The WHERE clause and the day bucket of one report, for any table's time column."""

    def __init__(
        self,
        dialect: Dialect,
        since: datetime,
        until: datetime,
        ends: Sequence[datetime],
        workspace_id: str | None,
    ) -> None:
        self.dialect = dialect
        self._since, self._until, self._ends = since, until, ends
        self._workspace_id = workspace_id

    def where(self, alias: str, column: str) -> tuple[str, list[Any]]:
        sql = f"{alias}.{column} >= ? AND {alias}.{column} < ?"
        params = [self.dialect.ts(self._since), self.dialect.ts(self._until)]
        if self._workspace_id is not None:
            sql += f" AND {alias}.workspace_id = ?"
            params.append(self._workspace_id)
        return sql, params

    def day(self, alias: str, column: str) -> tuple[str, list[Any]]:
        """Which day of the report a row falls on, counted from 0."""
        if len(self._ends) < 2:
            return "0", []
        steps = " ".join(f"WHEN {alias}.{column} < ? THEN {n}" for n in range(len(self._ends) - 1))
        params = [self.dialect.ts(end) for end in self._ends[:-1]]
        return f"CASE {steps} ELSE {len(self._ends) - 1} END", params


async def workspace_exists(conn: AsyncConnection, workspace_id: str) -> bool:
    dialect = Dialect(conn.dialect.name)
    found = await rows(conn, dialect, "SELECT 1 FROM workspaces WHERE id = ?", [workspace_id])
    return bool(found)


async def build_report(
    conn: AsyncConnection,
    *,
    since: datetime,
    until: datetime,
    zone: str,
    workspace_id: str | None,
) -> Report:
    """What happened in [since, until), in one workspace or all of them."""
    dialect = Dialect(conn.dialect.name)
    days = calendar(since, until, zone)
    period = _Period(dialect, since, until, [end for _, end in days], workspace_id)
    series: defaultdict[int, Counter[str]] = defaultdict(Counter)
    values: dict[str, Any] = {}
    values.update(await _texts(conn, period, series))
    values.update(await _conversations(conn, period))
    values.update(await _events(conn, period, series))
    values.update(await _handoff_reasons(conn, period))
    values.update(await _runs(conn, period))
    return Report(
        since=since,
        until=until,
        zone=zone,
        workspace_id=workspace_id,
        days=tuple(Day(day, **series[n]) for n, (day, _) in enumerate(days)),
        **values,
    )


async def _texts(
    conn: AsyncConnection, period: _Period, series: defaultdict[int, Counter[str]]
) -> dict[str, Any]:
    day, day_params = period.day("m", "created_at")
    where, params = period.where("m", "created_at")
    found = await rows(
        conn,
        period.dialect,
        f"SELECT {day}, m.direction, m.author, m.status, m.error_code, MAX(m.error_message), "
        "COUNT(*), COALESCE(SUM(m.segments), 0), COALESCE(SUM(m.cost_cents), 0) "
        f"FROM messages m WHERE {where} AND m.status NOT IN ({_list(_UNSENT)}) "
        "GROUP BY 1, 2, 3, 4, 5",
        [*day_params, *params, *_UNSENT],
    )
    by_author: Counter[str] = Counter({"agent": 0, "human": 0, "system": 0, "api": 0})
    statuses: Counter[str] = Counter()
    failures: Counter[tuple[str, str | None]] = Counter()
    segments, cost = 0, 0.0
    for n, direction, author, status, code, message, count, segs, cents in found:
        if direction == "inbound":
            series[n]["inbound"] += count
            continue
        series[n]["outbound"] += count
        by_author[author] += count
        statuses[status] += count
        segments += int(segs)
        cost += float(cents)
        if status in ("undelivered", "failed"):
            failures[(code or "none", message)] += count
    codes: dict[str, list[Any]] = {}
    for (code, message), count in failures.items():
        known = codes.setdefault(code, [message, 0])
        known[0] = known[0] or message
        known[1] += count
    return {
        "inbound": sum(s.get("inbound", 0) for s in series.values()),
        "outbound": sum(by_author.values()),
        "by_author": dict(by_author),
        "delivered": statuses["delivered"],
        "undelivered": statuses["undelivered"],
        "failed": statuses["failed"],
        "failures": tuple(
            Failure(code, message, count)
            for code, (message, count) in sorted(codes.items(), key=lambda i: (-i[1][1], i[0]))
        ),
        "segments": segments,
        "cost_cents": round(cost, 4),
    }


async def _conversations(conn: AsyncConnection, period: _Period) -> dict[str, Any]:
    started, started_params = period.where("c", "created_at")
    active, active_params = period.where("m", "created_at")
    found = await rows(
        conn,
        period.dialect,
        f"SELECT (SELECT COUNT(*) FROM conversations c WHERE {started}), "
        f"(SELECT COUNT(DISTINCT m.conversation_id) FROM messages m WHERE {active})",
        [*started_params, *active_params],
    )
    return {"conversations_started": found[0][0], "conversations_active": found[0][1]}


_OUTCOMES = {
    **dict.fromkeys(CONFIRMED, "confirmations"),
    **dict.fromkeys(MOVED, "moves"),
    **dict.fromkeys(CANCELED, "cancellations"),
    **dict.fromkeys(HANDOFF, "handoffs"),
    **dict.fromkeys(OPTED_OUT, "opt_outs"),
}


async def _events(
    conn: AsyncConnection, period: _Period, series: defaultdict[int, Counter[str]]
) -> dict[str, Any]:
    day, day_params = period.day("e", "created_at")
    where, params = period.where("e", "created_at")
    kinds = tuple(_OUTCOMES)
    found = await rows(
        conn,
        period.dialect,
        f"SELECT {day}, e.type, COUNT(*) FROM events e "
        f"WHERE {where} AND e.type IN ({_list(kinds)}) GROUP BY 1, 2",
        [*day_params, *params, *kinds],
    )
    totals: Counter[str] = Counter(dict.fromkeys(_OUTCOMES.values(), 0))
    for n, kind, count in found:
        series[n][_OUTCOMES[kind]] += count
        totals[_OUTCOMES[kind]] += count
    return dict(totals)


async def _handoff_reasons(conn: AsyncConnection, period: _Period) -> dict[str, Any]:
    where, params = period.where("e", "created_at")
    reason = (
        "(e.data ->> 'reason')" if period.dialect.postgres else "json_extract(e.data, '$.reason')"
    )
    found = await rows(
        conn,
        period.dialect,
        f"SELECT {reason}, COUNT(*) FROM events e "
        f"WHERE {where} AND e.type IN ({_list(HANDOFF)}) GROUP BY 1",
        [*params, *HANDOFF],
    )
    reasons: Counter[str] = Counter()
    for text, count in found:
        reasons[str(text) if text else "no reason given"] += count
    return {
        "handoff_reasons": tuple(
            Reason(text, count) for text, count in sorted(reasons.items(), key=_most_first)
        )
    }


def _most_first(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


async def _runs(conn: AsyncConnection, period: _Period) -> dict[str, Any]:
    where, params = period.where("r", "started_at")
    corrected = (
        "CASE WHEN json_typeof(r.corrections) = 'array' "
        "THEN json_array_length(r.corrections) ELSE 0 END > 0"
        if period.dialect.postgres
        else "json_array_length(r.corrections) > 0"
    )
    found = await rows(
        conn,
        period.dialect,
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN r.model IS NOT NULL THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(r.prompt_tokens), 0), COALESCE(SUM(r.completion_tokens), 0), "
        "COALESCE(SUM(CASE WHEN r.model IS NOT NULL AND r.outcome IN "
        f"({_list(FALLBACK_OUTCOMES)}) THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN r.model IS NOT NULL AND {corrected} THEN 1 ELSE 0 END), 0) "
        f"FROM agent_runs r WHERE {where}",
        [*FALLBACK_OUTCOMES, *params],
    )
    runs, model_runs, prompt, completion, fallbacks, corrections = (int(v) for v in found[0])
    latencies = [
        int(r[0])
        for r in await rows(
            conn,
            period.dialect,
            f"SELECT r.latency_ms FROM agent_runs r WHERE {where} "
            "AND r.model IS NOT NULL AND r.latency_ms > 0 ORDER BY r.latency_ms",
            params,
        )
    ]
    return {
        "runs": runs,
        "model_runs": model_runs,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "fallbacks": fallbacks,
        "corrections": corrections,
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p95_ms": percentile(latencies, 0.95),
    }


def _list(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))
