"""Per-key request rate limits on /v1 (flask-limiter), counted in the broker's Redis: 429 with Retry-After."""

from __future__ import annotations

import math
import time

from apiflask import APIFlask
from flask import Response, g, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit

from api.problems import HINTS, problem
from core.settings import Settings

STORAGE_TIMEOUT_SECONDS = 0.5  # a slow Redis must not hold a request: past this the limit is not enforced


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


def _unlimited() -> bool:
    """Only requests a key authenticated are counted (per key): not /healthz, /readyz, /docs or a 401."""
    return "principal" not in g or request.method == "OPTIONS"


def _key() -> str:
    return f"key:{g.principal.key_id}"


def refused(limit: RequestLimit) -> Response:
    """The 429: a problem body, Retry-After, and the IETF draft's RateLimit fields. Only a refusal reads the window
    back from Redis: headers on every answer cost a second round trip per request (0.3 ms of CPU each here)."""
    reset_at = limit.reset_at
    retry_after = max(1, math.ceil(reset_at - time.time()))
    headers = {"Retry-After": str(retry_after), "RateLimit-Limit": str(limit.limit.amount),
               "RateLimit-Remaining": str(max(0, limit.remaining)), "RateLimit-Reset": str(retry_after)}  # fmt: skip
    detail = f"{HINTS[429]} The limit is {limit.limit}."
    return problem(429, detail=detail, headers=headers)


def install_rate_limits(app: APIFlask, settings: Settings) -> None:
    """After `authenticate` (registered first): the limit is per key, across every /v1 route."""
    if not settings.rate_limit:
        return
    app.config.update(RATELIMIT_STORAGE_OPTIONS={"socket_timeout": STORAGE_TIMEOUT_SECONDS})
    limiter = Limiter(
        key_func=_key,
        application_limits=[settings.rate_limit],
        storage_uri=storage_uri(settings),
        strategy="sliding-window-counter",
        on_breach=refused,
        swallow_errors=True,  # the broker's Redis down: requests go on unlimited rather than fail
        key_prefix="conveyor-rate",
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
    # The refusal `refused` built, as it is (the generic HTTP error processor would rebuild it without its headers).
    app.register_error_handler(RateLimitExceeded, lambda error: error.get_response())
