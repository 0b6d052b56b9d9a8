"""A rate limit on the API, per credential: a token bucket each, in this process.

Each bucket holds up to `burst` requests and refills at `rate` a second; a request that finds
its bucket empty is answered 429 with `Retry-After` and goes no further. The credential is the
Bearer key (`/v1/...`, `/compat/...`), for Avaamo's API the channel uuid in the path, and for
the inbox API (`/compat/avochato/...`) its `auth_id` parameter; all are kept only hashed. A
request without one counts against its client address, and so does one whose credential is
refused (401, 403; 404 for an unknown channel): guessing credentials is bounded like sending
none.

Provider webhooks, the health check, the spec and short links are not limited here: providers
sign their requests and retry what is refused, and a customer's tap on a link is not an API call.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.errors import NotFound
from agent.settings import Settings
from webhooks.avochato.common import failure as inbox_failure
from webhooks.avochato.common import params as inbox_params
from webhooks.errors import HttpError, json_error

Clock = Callable[[], float]

_LIMITED = ("/v1/", "/compat/")
_AVAAMO = "/compat/avaamo/sms/"
_INBOX = "/compat/avochato/"
# Past this many buckets the least recently used go first, even before they are full again.
MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Token buckets by key. A bucket left alone until it is full again is the same as a new
    one, so it is dropped then: the buckets kept are those of keys seen in the last
    `burst / rate` seconds, and never more than `max_buckets`."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Clock = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._max = max_buckets
        self._refill = burst / rate
        # Least recently touched first.
        self._buckets: collections.OrderedDict[bytes, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: bytes) -> float:
        """Take a token: 0 when there was one, else the seconds until there will be."""
        bucket = self._current(key)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def wait(self, key: bytes) -> float:
        """The seconds until `key` has a token, taking none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.at) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _current(self, key: bytes) -> _Bucket:
        now = self._clock()
        self._evict(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return bucket
        self._buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _evict(self, now: float) -> None:
        while self._buckets:
            bucket = next(iter(self._buckets.values()))
            if now - bucket.at < self._refill:
                return
            self._buckets.popitem(last=False)


async def credential(request: web.Request) -> bytes | None:
    """What the request is limited by (hashed), or None for a path that is not limited."""
    path = request.path
    if not path.startswith(_LIMITED):
        return None
    if path.startswith(_INBOX):
        # The inbox API's credential is a parameter, in the query string or the body.
        try:
            auth_id = (await inbox_params(request)).get("auth_id")
        except HttpError:
            auth_id = None
        if isinstance(auth_id, str) and auth_id:
            return b"inbox:" + _digest(auth_id)
        return client(request)
    if path.startswith(_AVAAMO):
        channel = path[len(_AVAAMO) :].split("/", 1)[0]
        if channel:
            return b"channel:" + _digest(channel)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return b"key:" + _digest(key.strip())
    return client(request)


def client(request: web.Request) -> bytes:
    return b"ip:" + (request.remote or "").encode()


def _refused(key: bytes, status: int | None) -> bool:
    """Whether the answer says the credential is not one (an unknown channel is not found)."""
    if key.startswith(b"inbox:"):
        # The inbox API answers 403 to a member whose role does not allow the change.
        return status == 401
    return status in (401, 403) or (status == 404 and key.startswith(b"channel:"))


def _status(exc: Exception) -> int | None:
    """The status the error middleware answers `exc` with, where it tells of the credential."""
    if isinstance(exc, HttpError | web.HTTPException):
        return exc.status
    return 404 if isinstance(exc, NotFound) else None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def rate_limit_middleware(settings: Settings, *, clock: Clock = time.monotonic) -> Middleware:
    buckets = TokenBuckets(
        rate=settings.api_rate_per_second, burst=settings.api_rate_burst, clock=clock
    )

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = await credential(request)
        if key is None:
            return await handler(request)
        address = client(request)
        wait = buckets.take(key)
        if not wait and key != address:
            # A client whose guesses used up its address's bucket waits, whatever key it sends.
            wait = buckets.wait(address)
        if wait:
            seconds = max(1, math.ceil(wait))
            # The inbox API answers in its own envelope; the rest in the service's error shape.
            answer = inbox_failure if request.path.startswith(_INBOX) else json_error
            return answer(
                429,
                "rate_limited",
                f"too many requests; retry in {seconds} s",
                {
                    "retry_after_seconds": seconds,
                    "rate_per_second": buckets.rate,
                    "burst": buckets.burst,
                },
                {"Retry-After": str(seconds)},
            )
        try:
            response = await handler(request)
        except Exception as exc:
            if key != address and _refused(key, _status(exc)):
                buckets.take(address)
            raise
        if key != address and _refused(key, response.status):
            buckets.take(address)
        return response

    return rate_limit
