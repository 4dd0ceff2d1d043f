"""The web console at /console: server-rendered pages over the ledger (Jinja2, with htmx vendored for live parts),
signed in with an API key whose tenant and scopes decide what is shown (api/console/session.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from apiflask import APIFlask

from api.console import datasets, failures, jobs, pages, queues, schedules, workflows
from api.console.render import TEMPLATE_HELPERS
from api.console.session import CSRF_HEADER, can, csrf_token
from core.keys import Scope
from core.settings import Settings

BLUEPRINTS = (pages.bp, jobs.bp, workflows.bp, failures.bp, schedules.bp, datasets.bp, queues.bp)


def install_console(app: APIFlask, settings: Settings, server_secret: bytes) -> None:
    # The session cookie's signing key, derived from the server secret: a leaked cookie key reveals nothing of it.
    app.secret_key = hmac.new(server_secret, b"conveyor console session", hashlib.sha256).digest()
    app.config.update(
        SESSION_COOKIE_NAME="conveyor_console",
        SESSION_COOKIE_PATH="/console",  # never sent to /v1, which takes keys in headers only
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.console_session_hours),
    )
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.context_processor
    def console_globals() -> dict[str, object]:
        return {**TEMPLATE_HELPERS, "csrf_token": csrf_token, "csrf_header": CSRF_HEADER, "can": can, "Scope": Scope}
