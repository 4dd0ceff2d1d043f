"""Per-key request rate limits on /v1, counted in the broker's Redis: 429 with Retry-After.

The counting is the `limits` library's (the one flask-limiter is built on): its sliding-window counter, one Lua call
per request in Redis. It is called directly from a before-request hook: flask-limiter's own per-request work around
the same call (its filters, decorators and argument introspection) cost 0.4-0.5 ms of CPU per request, a quarter of
a single submit's, where the call itself costs under 0.1 ms."""

from __future__ import annotations

import logging
import math
import time

from apiflask import APIFlask
from flask import Response, g, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from api.problems import HINTS, problem
from core.settings import Settings

STORAGE_TIMEOUT_SECONDS = 0.5  # a slow Redis must not hold a request: past this the limit is not enforced
KEY_PREFIX = "conveyor-rate"
log = logging.getLogger(__name__)


def storage_uri(settings: Settings) -> str:
    """CONVEYOR_RATE_LIMIT_STORAGE_URL, else the broker's Redis (the embedded one on its unix socket), else
    per-process memory (a RabbitMQ broker and no Redis: each API process then counts on its own)."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    broker = settings.resolved_broker_url
    if broker.startswith("redis+socket://"):
        return "redis+unix://" + broker.removeprefix("redis+socket://")
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return "memory://"


class KeyRateLimits:
    """The limits of CONVEYOR_RATE_LIMIT (`;` between them), each counted per API key."""

    def __init__(self, settings: Settings) -> None:
        self.items: list[RateLimitItem] = parse_many(settings.rate_limit)
        uri = storage_uri(settings)
        options: dict[str, float | str | bool] = {"key_prefix": KEY_PREFIX, "wrap_exceptions": True}
        if uri.startswith(("redis", "rediss")):
            options["socket_timeout"] = STORAGE_TIMEOUT_SECONDS
        self.counter = SlidingWindowCounterRateLimiter(storage_from_string(uri, **options))

    def check(self) -> Response | None:
        """None to go on, or the 429. Only requests a key authenticated are counted (per key): not /healthz,
        /readyz, /docs or a 401. The storage down or slow: the request goes on unlimited rather than fail."""
        if "principal" not in g or request.method == "OPTIONS":
            return None
        key = f"key:{g.principal.key_id}"
        for item in self.items:
            try:
                if not self.counter.hit(item, key):
                    return self.refused(item, key)
            except StorageError as exc:
                log.warning("rate limit not enforced: its storage failed (%s)", type(exc.storage_error).__name__)
                return None
        return None

    def refused(self, item: RateLimitItem, key: str) -> Response:
        """The 429: a problem body, Retry-After, and the IETF draft's RateLimit fields. Only a refusal reads the
        window back: headers on every answer would cost a second round trip per request."""
        stats = self.counter.get_window_stats(item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        headers = {"Retry-After": str(retry_after), "RateLimit-Limit": str(item.amount),
                   "RateLimit-Remaining": str(max(0, stats.remaining)),
                   "RateLimit-Reset": str(retry_after)}  # fmt: skip
        return problem(429, detail=f"{HINTS[429]} The limit is {item}.", headers=headers)


def install_rate_limits(app: APIFlask, settings: Settings) -> None:
    """After `authenticate` (registered first): the limit is per key, across every /v1 route."""
    if settings.rate_limit:
        app.before_request(KeyRateLimits(settings).check)
