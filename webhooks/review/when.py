"""Moments people type: `7d`, `24h`, `2w`, `90m`, a date (midnight where they are), an ISO time."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import click

_SPAN = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, *, now: datetime, zone: str, name: str = "--since") -> datetime:
    """`7d` is seven days before `now`; `2026-11-17` is that day's start in `zone`; an ISO time
    without an offset is in `zone` too."""
    if match := _SPAN.match(text):
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a span (30m, 24h, 7d, 2w), a date (2026-11-17) or an ISO time",
            param_hint=name,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)
