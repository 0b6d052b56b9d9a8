"""The built-in appointment book: when the business is open, and which times are free.

Pure: it is handed the opening hours, the closed days, the business's time zone and the times
already taken, and answers two questions the agent's tools ask. `refusal` says why a start time
cannot be booked (past, closed that day, outside the hours, taken), or nothing when it can.
`open_slots` lists a few free start times in a window, spread over its days so a customer hears
a choice ("Tue at 9:00 AM, Tue at 2:30 PM or Wed at 10:00 AM"), not five in one morning.

Hours are local wall-clock times in the business's zone, so a day on which clocks change keeps
its hours; a start time that does not exist that day (clocks jump forward over it) is never
offered.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A workspace that set none: weekdays, nine to five.
DEFAULT_HOURS = {day: "09:00-17:00" for day in WEEKDAYS[:5]}
# A visit whose length nothing tells (no end time on file).
DEFAULT_MINUTES = 30
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# The longest window `open_slots` looks through, and the furthest ahead anything is booked.
MAX_DAYS = 62
BOOKING_HORIZON = timedelta(days=366)


class Why(StrEnum):
    PAST = "past"
    TOO_FAR = "too_far"
    CLOSED_DAY = "closed_day"
    OUTSIDE_HOURS = "outside_hours"
    TAKEN = "taken"


@dataclass(frozen=True)
class Refusal:
    why: Why
    detail: str  # a short sentence the model can pass on


@dataclass(frozen=True)
class Hours:
    """Opening hours: for each weekday (0 = Monday) its open spans in local time; and dates
    the business is closed whatever the weekday (holidays)."""

    weekly: Mapping[int, tuple[tuple[time, time], ...]]
    closed: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, weekly: Mapping[str, str], closed: Iterable[str] = ()) -> Hours:
        """From `{"mon": "08:00-12:00, 13:00-17:00", "sat": "09:00-13:00"}` (a day left out or
        empty is closed) and ISO dates. Raises ValueError naming what is wrong."""
        days: dict[int, tuple[tuple[time, time], ...]] = {}
        for name, text in weekly.items():
            key = name.strip().lower()[:3]
            if key not in WEEKDAYS:
                raise ValueError(f"unknown weekday {name!r}: use mon, tue, ... sun")
            spans: list[tuple[time, time]] = []
            for part in filter(None, (p.strip() for p in str(text).split(","))):
                found = _SPAN.match(part)
                if not found:
                    raise ValueError(f"{name}: {part!r} is not a span like 08:00-17:00")
                h1, m1, h2, m2 = (int(g) for g in found.groups())
                if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
                    raise ValueError(f"{name}: {part!r} is not a time of day")
                opens = time(h1, m1)
                closes = time.max if h2 == 24 else time(h2, m2)
                if closes <= opens:
                    raise ValueError(f"{name}: {part!r} closes before it opens")
                spans.append((opens, closes))
            spans.sort()
            for (_, end), (start, _) in itertools.pairwise(spans):
                if start < end:
                    raise ValueError(f"{name}: spans overlap")
            days[WEEKDAYS.index(key)] = tuple(spans)
        try:
            closed_days = frozenset(date.fromisoformat(str(d).strip()) for d in closed)
        except ValueError as exc:
            raise ValueError(f"closed days must be ISO dates like 2026-12-25: {exc}") from None
        return cls(days, closed_days)

    def spans_on(self, day: date) -> tuple[tuple[time, time], ...]:
        if day in self.closed:
            return ()
        return self.weekly.get(day.weekday(), ())

    def describe(self) -> str:
        """'Mon-Fri 8:00 AM-5:00 PM; Sat 9:00 AM-1:00 PM; closed Sun' for the prompt."""
        groups: list[tuple[list[int], tuple[tuple[time, time], ...]]] = []
        for weekday in range(7):
            spans = self.weekly.get(weekday, ())
            if groups and groups[-1][1] == spans and groups[-1][0][-1] == weekday - 1:
                groups[-1][0].append(weekday)
            else:
                groups.append(([weekday], spans))
        parts = []
        for weekdays, spans in groups:
            names = WEEKDAYS[weekdays[0]].title()
            if len(weekdays) > 1:
                names += "-" + WEEKDAYS[weekdays[-1]].title()
            if spans:
                parts.append(f"{names} " + ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in spans))
            else:
                parts.append(f"closed {names}")
        return "; ".join(parts)


def type_minutes(types: Mapping[str, int], kind: str | None) -> int | None:
    """The length of a kind of visit: its own entry, or the one it names ("teeth cleaning" is a
    "cleaning"); None when it matches none."""
    wanted = " ".join((kind or "").lower().split())
    if not wanted:
        return None
    known = {" ".join(name.lower().split()): minutes for name, minutes in types.items()}
    if wanted in known:
        return known[wanted]
    named = [n for n in known if re.search(rf"\b{re.escape(n)}\b", wanted)]
    return known[max(named, key=len)] if named else None


def format_when(moment: datetime, zone: str) -> str:
    """'Tue, Mar 10 at 3:00 PM' in the given zone: how times are said to customers."""
    local = moment.astimezone(ZoneInfo(zone))
    hour = local.hour % 12 or 12
    return f"{local:%a, %b} {local.day} at {hour}:{local:%M %p}"


class Book:
    """One business's calendar as the agent sees it for one turn."""

    def __init__(
        self,
        hours: Hours,
        zone: str,
        taken: Sequence[tuple[datetime, datetime]],
        *,
        step_minutes: int = 15,
    ) -> None:
        self.hours = hours
        self.zone = ZoneInfo(zone)
        self._taken = sorted((a.astimezone(UTC), b.astimezone(UTC)) for a, b in taken)
        self._step = timedelta(minutes=step_minutes)

    def refusal(self, start: datetime, minutes: int, *, now: datetime) -> Refusal | None:
        """Why `start` (aware) cannot be booked for `minutes`, or None when it can."""
        if start <= now:
            return Refusal(Why.PAST, "That time has already passed.")
        if start > now + BOOKING_HORIZON:
            return Refusal(Why.TOO_FAR, "That is more than a year away.")
        local = start.astimezone(self.zone)
        # The refusal names the time asked for, so a reply may repeat it.
        asked = format_when(start, self.zone.key)
        spans = self.hours.spans_on(local.date())
        if not spans:
            return Refusal(
                Why.CLOSED_DAY, f"{asked}: the office is closed on {local:%A, %B} {local.day}."
            )
        end = start + timedelta(minutes=minutes)
        if not any(self._within(local.date(), span, start, end) for span in spans):
            hours = ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in spans)
            return Refusal(
                Why.OUTSIDE_HOURS,
                f"{asked}: a {minutes}-minute visit then is outside opening hours ({hours} that "
                "day).",
            )
        if self._clashes(start, end):
            return Refusal(Why.TAKEN, f"{asked} is already taken.")
        return None

    def open_slots(
        self,
        first_day: date,
        last_day: date,
        *,
        minutes: int,
        now: datetime,
        after: time | None = None,
        before: time | None = None,
        limit: int = 5,
        per_day: int = 2,
    ) -> list[datetime]:
        """Up to `limit` free start times (aware, in the business's zone) between the two days
        (local, inclusive), starting at or after `after` and by `before` when given; at most
        `per_day` a day while later days still have room, the first of each day first."""
        last_day = min(last_day, first_day + timedelta(days=MAX_DAYS - 1))
        by_day: list[list[datetime]] = []
        day = first_day
        while day <= last_day:
            by_day.append(self._free_on(day, minutes, now, after, before, limit))
            day += timedelta(days=1)
        chosen: list[datetime] = []
        # Round one takes `per_day` from each day in order; later rounds fill up if short.
        taken_per_day = [0] * len(by_day)
        quota = per_day
        while len(chosen) < limit and any(
            taken_per_day[i] < len(slots) for i, slots in enumerate(by_day)
        ):
            for i, slots in enumerate(by_day):
                while taken_per_day[i] < min(quota, len(slots)) and len(chosen) < limit:
                    chosen.append(slots[taken_per_day[i]])
                    taken_per_day[i] += 1
            quota += per_day
        return sorted(chosen)

    def _free_on(
        self,
        day: date,
        minutes: int,
        now: datetime,
        after: time | None,
        before: time | None,
        enough: int,
    ) -> list[datetime]:
        found: list[datetime] = []
        length = timedelta(minutes=minutes)
        for opens, closes in self.hours.spans_on(day):
            cursor = datetime.combine(day, opens)
            while cursor.time() >= opens and len(found) < enough:
                if cursor.date() != day:
                    break
                wall = cursor.time()
                if (after is None or wall >= after) and (before is None or wall <= before):
                    start = _local(day, wall, self.zone)
                    if (
                        start is not None
                        and start > now
                        and self._within(day, (opens, closes), start, start + length)
                        and not self._clashes(start, start + length)
                    ):
                        found.append(start)
                cursor += self._step
                if cursor.time() >= closes and closes != time.max:
                    break
        return found

    def _within(self, day: date, span: tuple[time, time], start: datetime, end: datetime) -> bool:
        opens = datetime.combine(day, span[0], tzinfo=self.zone)
        if span[1] == time.max:
            closes = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=self.zone)
        else:
            closes = datetime.combine(day, span[1], tzinfo=self.zone)
        return opens <= start and end <= closes

    def _clashes(self, start: datetime, end: datetime) -> bool:
        return any(a < end and start < b for a, b in self._taken)


def _local(day: date, wall: time, zone: ZoneInfo) -> datetime | None:
    """The moment `wall` on `day` in `zone`; None when clocks skip over it that day."""
    moment = datetime.combine(day, wall, tzinfo=zone)
    back = moment.astimezone(UTC).astimezone(zone)
    if (back.date(), back.time()) != (day, wall):
        return None
    return moment


def _clock(moment: time) -> str:
    if moment == time.max:
        return "midnight"
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
