"""Response headers for every answer: no sniffing, no framing, no caching of /v1 bodies; CORS for listed origins."""

from __future__ import annotations

from apiflask import APIFlask
from flask import Response, request
from flask_cors import CORS

from core.settings import Settings

# What a browser frontend sends and may read besides the simple headers.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["Location", "ETag", "Retry-After", "X-Request-ID"]


def secure_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    if request.path.startswith("/v1/"):
        # A tenant's data never rests in a shared or browser cache; polling clients still send If-None-Match.
        response.headers["Cache-Control"] = "no-store"
    return response


def install_headers(app: APIFlask, settings: Settings) -> None:
    app.after_request(secure_headers)
    if settings.cors_origins:  # none by default: a browser on another origin gets no access
        CORS(app, resources={r"/v1/*": {"origins": settings.cors_origins}}, allow_headers=CORS_REQUEST_HEADERS,
             expose_headers=CORS_EXPOSED_HEADERS, max_age=600)  # fmt: skip
