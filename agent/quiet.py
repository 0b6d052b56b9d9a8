"""Quiet hours: texts the business starts reach people between 08:00 and 20:00 their time.

The recipient's zone is the contact's own when known, else the one their number's area code is
in, else the workspace's. A send that would land outside the window is held until it opens
(answered `scheduled` with the time); an `alert` may go at any hour, and a reply inside an
exchange the customer started is never held (those are not sends through this gate).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

OPENS = time(8, 0)
CLOSES = time(20, 0)


def parse_window(text: str) -> tuple[time, time]:
    """ "08:00-20:00" → (08:00, 20:00); "00:00-24:00" is the whole day."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-", 1))
        start = time.fromisoformat(start_text)
        end = time.max if end_text == "24:00" else time.fromisoformat(end_text)
    except ValueError as exc:
        raise ValueError(f"a send window is HH:MM-HH:MM, not {text!r}") from exc
    if end <= start:
        raise ValueError(f"a send window must end after it starts: {text!r}")
    return start, end


def recipient_zone(*, phone: str, contact_zone: str | None, workspace_zone: str) -> str:
    if contact_zone:
        return contact_zone
    try:
        zones = [
            z for z in number_zones.time_zones_for_number(phonenumbers.parse(phone)) if _known(z)
        ]
    except phonenumbers.NumberParseException:
        zones = []
    if not zones:
        return workspace_zone
    # An area code spanning several zones: the workspace's when it is one of them.
    return workspace_zone if workspace_zone in zones else zones[0]


def next_allowed(
    moment: datetime, zone: str, window: tuple[time, time] = (OPENS, CLOSES)
) -> datetime | None:
    """When a text meant for `moment` may go: None when it may go then, else the window's next
    opening (UTC)."""
    opens, closes = window
    tz = ZoneInfo(zone)
    local = moment.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if opens <= clock and (clock < closes or closes == time.max):
        return None
    day = local.date() if local.time() < opens else local.date() + timedelta(days=1)
    opening = datetime.combine(day, opens, tzinfo=tz)
    return opening.astimezone(ZoneInfo("UTC"))


def _known(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
