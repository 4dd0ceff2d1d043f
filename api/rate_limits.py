"""Per-key request rate limits on /v1 (flask-limiter), counted in the broker's Redis: 429 with Retry-After."""

from __future__ import annotations

from apiflask import APIFlask
from flask import g, request
from flask_limiter import Limiter

from core.settings import Settings

# Names of the IETF draft's fields (RateLimit-Limit, RateLimit-Remaining); the reset stays a Unix time, as GitHub's.
HEADER_NAMES = {
    "RATELIMIT_HEADER_LIMIT": "RateLimit-Limit",
    "RATELIMIT_HEADER_REMAINING": "RateLimit-Remaining",
    "RATELIMIT_HEADER_RESET": "X-RateLimit-Reset",
}
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


def install_rate_limits(app: APIFlask, settings: Settings) -> None:
    """After `authenticate` (registered first): the limit is per key, across every /v1 route."""
    if not settings.rate_limit:
        return
    app.config.update(HEADER_NAMES, RATELIMIT_STORAGE_OPTIONS={"socket_timeout": STORAGE_TIMEOUT_SECONDS})
    limiter = Limiter(
        key_func=_key,
        application_limits=[settings.rate_limit],
        storage_uri=storage_uri(settings),
        strategy="sliding-window-counter",
        headers_enabled=True,
        swallow_errors=True,  # the broker's Redis down: requests go on unlimited rather than fail
        key_prefix="conveyor-rate",
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
