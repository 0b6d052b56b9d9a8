"""Every provider's webhook edge by name: the routes mount them, and a quarantined webhook is
replayed through the one it arrived for."""

from __future__ import annotations

from webhooks.avochato_sender import AvochatoCarrier
from webhooks.carriers import Carrier
from webhooks.gateway import GatewayCarrier
from webhooks.telnyx import TelnyxCarrier
from webhooks.twilio import TwilioCarrier


def carriers() -> dict[str, Carrier]:
    found: list[Carrier] = [TwilioCarrier(), TelnyxCarrier(), GatewayCarrier(), AvochatoCarrier()]
    return {carrier.name: carrier for carrier in found}
