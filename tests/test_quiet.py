"""Quiet hours and templates, as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.errors import InvalidInput
from agent.quiet import next_allowed, parse_window, recipient_zone
from agent.templates import render, render_lenient, variables_of


def test_a_text_at_22_30_waits_for_8_the_next_morning() -> None:
    # 22:30 in Los Angeles (PST, UTC-8) is 06:30 UTC the next day.
    evening = datetime(2031, 1, 15, 6, 30, tzinfo=UTC)
    assert next_allowed(evening, "America/Los_Angeles") == datetime(2031, 1, 15, 16, 0, tzinfo=UTC)
    # 05:00 waits for 08:00 the same day; noon goes at once.
    early = datetime(2031, 1, 15, 13, 0, tzinfo=UTC)
    assert next_allowed(early, "America/Los_Angeles") == datetime(2031, 1, 15, 16, 0, tzinfo=UTC)
    assert next_allowed(datetime(2031, 1, 15, 20, 0, tzinfo=UTC), "America/Los_Angeles") is None
    # The edges: 08:00 is open, 20:00 is closed.
    assert next_allowed(datetime(2031, 1, 15, 16, 0, tzinfo=UTC), "America/Los_Angeles") is None
    assert next_allowed(datetime(2031, 1, 16, 4, 0, tzinfo=UTC), "America/Los_Angeles") == (
        datetime(2031, 1, 16, 16, 0, tzinfo=UTC)
    )


def test_the_window_across_a_clock_change() -> None:
    # The night before US daylight time starts (2031-03-09): 08:00 PDT is 15:00 UTC.
    night = datetime(2031, 3, 9, 7, 0, tzinfo=UTC)  # 23:00 PST on the 8th
    assert next_allowed(night, "America/Los_Angeles") == datetime(2031, 3, 9, 15, 0, tzinfo=UTC)


def test_configured_windows() -> None:
    always = parse_window("00:00-24:00")
    assert next_allowed(datetime(2031, 1, 15, 10, 0, tzinfo=UTC), "UTC", always) is None
    nine_to_nine = parse_window("09:00-21:00")
    assert next_allowed(datetime(2031, 1, 15, 8, 0, tzinfo=UTC), "UTC", nine_to_nine) == (
        datetime(2031, 1, 15, 9, 0, tzinfo=UTC)
    )
    for bad in ("20:00-08:00", "8-20", "noon-night"):
        with pytest.raises(ValueError, match="send window"):
            parse_window(bad)


def test_the_recipients_zone() -> None:
    assert (
        recipient_zone(phone="+13105551234", contact_zone="Europe/Madrid", workspace_zone="UTC")
        == "Europe/Madrid"
    )
    # 310 is Los Angeles; 212 New York.
    la = recipient_zone(phone="+13105551234", contact_zone=None, workspace_zone="America/Denver")
    assert la == "America/Los_Angeles"
    ny = recipient_zone(phone="+12125551234", contact_zone=None, workspace_zone="America/Denver")
    assert ny == "America/New_York"
    # A number with no known area falls back to the workspace's zone.
    assert (
        recipient_zone(phone="+15550000000", contact_zone=None, workspace_zone="America/Denver")
        == "America/Denver"
    )


def test_templates() -> None:
    body = "Service complete! Total: ${amount}. Pay online: {payment_link}. {amount} again"
    assert variables_of(body) == ["amount", "payment_link"]
    assert render(body, {"amount": 120.0, "payment_link": "https://pay.example.com/x"}) == (
        "Service complete! Total: $120. Pay online: https://pay.example.com/x. 120 again"
    )
    with pytest.raises(InvalidInput) as refused:
        render(body, {"amount": " "})
    assert refused.value.message == "missing template variables: amount, payment_link"
    assert render_lenient("Hi {first_name}! This is {business_name}.", {"business_name": "Us"}) == (
        "Hi! This is Us."
    )
