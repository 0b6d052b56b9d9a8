"""The built-in appointment book: refusals with a reason, free slots spread over days, and the
days clocks change."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.booking import Book, Hours, Why

ZONE = "America/New_York"
NY = ZoneInfo(ZONE)
# A Monday morning before opening.
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=NY)

WEEK = {
    "mon": "08:00-12:00, 13:00-17:00",
    "tue": "08:00-12:00, 13:00-17:00",
    "wed": "08:00-12:00, 13:00-17:00",
    "thu": "08:00-12:00, 13:00-17:00",
    "fri": "08:00-12:00, 13:00-17:00",
    "sat": "09:00-13:00",
}


def _book(taken: list[tuple[datetime, datetime]] | None = None, **kwargs: object) -> Book:
    hours = Hours.parse(WEEK, closed=["2026-03-04"])
    return Book(hours, ZONE, taken or [], **kwargs)  # type: ignore[arg-type]


def _at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


def test_hours_are_read_from_what_a_person_types_and_told_back_compactly() -> None:
    hours = Hours.parse({"Monday": "8:00-12:00,13:00-17:00", "TUE": " 08:00 - 12:00 "})
    assert hours.weekly[0] == ((time(8), time(12)), (time(13), time(17)))
    assert hours.weekly[1] == ((time(8), time(12)),)
    assert _book().hours.describe() == (
        "Mon-Fri 8:00 AM-12:00 PM, 1:00 PM-5:00 PM; Sat 9:00 AM-1:00 PM; closed Sun"
    )


@pytest.mark.parametrize(
    ("weekly", "closed", "message"),
    [
        ({"funday": "08:00-12:00"}, [], "unknown weekday"),
        ({"mon": "8am to noon"}, [], "is not a span"),
        ({"mon": "12:00-08:00"}, [], "closes before it opens"),
        ({"mon": "08:00-12:00, 11:00-13:00"}, [], "overlap"),
        ({"mon": "25:00-26:00"}, [], "not a time of day"),
        ({"mon": "08:00-12:00"}, ["next tuesday"], "ISO dates"),
    ],
)
def test_hours_that_make_no_sense_are_refused_saying_what_is_wrong(
    weekly: dict[str, str], closed: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Hours.parse(weekly, closed)


def test_a_free_time_within_hours_can_be_booked() -> None:
    assert _book().refusal(_at(2, 9, 30), 30, now=NOW) is None
    # Exactly filling the end of a span is fine.
    assert _book().refusal(_at(2, 16, 30), 30, now=NOW) is None


@pytest.mark.parametrize(
    ("start", "minutes", "why"),
    [
        (_at(2, 6, 0), 30, Why.PAST),
        (_at(2, 7, 0), 30, Why.PAST),  # now is not bookable either
        (datetime(2027, 6, 1, 9, tzinfo=NY), 30, Why.TOO_FAR),
        (_at(4, 9, 0), 30, Why.CLOSED_DAY),  # a closed date on a weekday
        (_at(8, 10, 0), 30, Why.CLOSED_DAY),  # Sunday
        (_at(2, 7, 30), 30, Why.OUTSIDE_HOURS),
        (_at(2, 11, 45), 30, Why.OUTSIDE_HOURS),  # runs into lunch
        (_at(2, 17, 0), 30, Why.OUTSIDE_HOURS),
        (_at(2, 10, 15), 30, Why.TAKEN),  # overlaps 10:00-10:30
        (_at(2, 9, 45), 30, Why.TAKEN),
    ],
)
def test_times_that_cannot_be_booked_are_refused_with_the_reason(
    start: datetime, minutes: int, why: Why
) -> None:
    book = _book([(_at(2, 10), _at(2, 10, 30))])
    refusal = book.refusal(start, minutes, now=NOW)
    assert refusal is not None
    assert refusal.why == why
    assert refusal.detail


def test_free_slots_skip_taken_closed_and_past_times_and_spread_over_days() -> None:
    taken = [(_at(2, 8), _at(2, 9)), (_at(3, 8), _at(3, 12))]
    book = _book(taken)
    now = _at(2, 8, 10)
    slots = book.open_slots(date(2026, 3, 2), date(2026, 3, 6), minutes=30, now=now)
    # Two on each day in order; Wednesday the 4th is closed; the taken hours are skipped.
    assert slots == [_at(2, 9), _at(2, 9, 15), _at(3, 13), _at(3, 13, 15), _at(5, 8)]
    assert all(book.refusal(s, 30, now=now) is None for s in slots)


def test_free_slots_respect_after_and_before_and_fill_up_from_one_day() -> None:
    book = _book()
    slots = book.open_slots(
        date(2026, 3, 3), date(2026, 3, 3), minutes=60, now=NOW, after=time(15), limit=3
    )
    assert slots == [_at(3, 15), _at(3, 15, 15), _at(3, 15, 30)]
    mornings = book.open_slots(
        date(2026, 3, 2), date(2026, 3, 3), minutes=30, now=NOW, before=time(8, 15)
    )
    assert mornings == [_at(2, 8), _at(2, 8, 15), _at(3, 8), _at(3, 8, 15)]


def test_no_free_slot_gives_an_empty_list() -> None:
    book = _book([(_at(7, 9), _at(7, 13))])
    assert book.open_slots(date(2026, 3, 7), date(2026, 3, 8), minutes=30, now=NOW) == []


def test_the_day_clocks_spring_forward_keeps_its_hours_and_never_offers_a_missing_time() -> None:
    # 2026-03-08 (Sunday) 2:00 AM does not exist in New York: a business open around the clock
    # that Sunday offers 1:45 then 3:00.
    hours = Hours.parse({"sun": "01:00-04:00"})
    book = Book(hours, ZONE, [])
    now = datetime(2026, 3, 7, tzinfo=UTC)
    slots = book.open_slots(
        date(2026, 3, 8), date(2026, 3, 8), minutes=15, now=now, limit=20, per_day=20
    )
    walls = [s.astimezone(NY).strftime("%H:%M") for s in slots]
    assert not [w for w in walls if w.startswith("02:")]
    assert walls[:4] == ["01:00", "01:15", "01:30", "01:45"]
    assert "03:00" in walls
    # Each offered slot is a real, distinct moment.
    assert len({s.astimezone(UTC) for s in slots}) == len(slots)


def test_the_day_clocks_fall_back_keeps_local_opening_hours() -> None:
    hours = Hours.parse({"sun": "08:00-10:00"})
    book = Book(hours, ZONE, [])
    now = datetime(2026, 10, 31, tzinfo=UTC)
    slots = book.open_slots(date(2026, 11, 1), date(2026, 11, 1), minutes=60, now=now)
    assert slots[0].astimezone(NY).hour == 8
    assert slots[0].astimezone(UTC) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # EST, UTC-5


def test_a_window_longer_than_two_months_is_cut_short() -> None:
    book = _book()
    slots = book.open_slots(
        date(2026, 3, 2), date(2027, 3, 2), minutes=30, now=NOW, limit=1000, per_day=1
    )
    assert max(slots) < datetime.combine(date(2026, 3, 2) + timedelta(days=62), time(), NY)
