"""Who is signed in to the console: an API key exchanged for a session cookie, and the CSRF token of every form.

The cookie is Flask's signed session (the server secret signs it; HttpOnly, SameSite=Lax, Secure unless
CONVEYOR_CONSOLE_COOKIE_SECURE=false, path /console), holding the key's id, never its secret. Every request looks the
key up again (through the API's key cache), so revoking or expiring the key ends its console sessions too. The key's
tenant and scopes decide what the console shows and which buttons exist, exactly as they decide what /v1 answers.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, abort, g, redirect, request, session, url_for

from api.auth import AUTH_OFF, LOOPBACK_ADDRESSES, principal
from api.extension import conveyor
from core import logs
from core.keys import KeyInvalid, Principal, Scope
from core.types import utcnow

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"  # htmx's requests send the token as a header (base.html)

View = TypeVar("View", bound=Callable[..., Any])


def sign_in(token: str) -> Principal:
    """Check the key as /v1 would (KeyInvalid says why not) and start a session of it."""
    principal = conveyor().authenticator.authenticate(f"Bearer {token.strip()}")
    session.clear()
    session.permanent = True  # lasts PERMANENT_SESSION_LIFETIME (CONVEYOR_CONSOLE_SESSION_HOURS)
    session["key_id"], session[CSRF_FIELD] = principal.key_id, secrets.token_urlsafe(32)
    return principal


def sign_out() -> None:
    session.clear()


def current() -> Principal | None:
    """The signed-in principal, or None (no session, or its key is revoked, expired or gone)."""
    if conveyor().settings.auth == "off":
        return AUTH_OFF if request.remote_addr in LOOPBACK_ADDRESSES else None
    key_id = session.get("key_id")
    if not isinstance(key_id, str):
        return None
    try:
        return conveyor().authenticator.session_principal(key_id, now=utcnow())
    except KeyInvalid:
        session.clear()
        return None


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Every state-changing console request carries the session's token (form field or header), else 403."""
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        abort(403, "The form's security token is missing or stale: reload the page and try again.")


def signed_in(scope: Scope) -> Callable[[View], View]:
    """A console page or action for a principal with `scope`: without a session, to the sign-in page (with the page
    asked for); without the scope, 403. POSTs are CSRF-checked first."""

    def wrap(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if request.method == "POST":
                check_csrf()
            principal = current()
            if principal is None:
                if request.method != "GET" or request.headers.get("HX-Request"):
                    abort(401, "Your console session ended: sign in again.")
                return redirect(url_for("console.sign_in_page", next=request.full_path.rstrip("?")))
            if not principal.allows(scope):
                abort(403, f"This needs the `{scope.value}` scope; key {principal.key_id} has "
                           f"{', '.join(sorted(principal.scopes))}.")  # fmt: skip
            g.principal = principal
            logs.bind(tenant=principal.tenant_id, key_id=principal.key_id)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap


def can(scope: Scope) -> bool:
    """Whether the signed-in key has `scope`: which buttons a page shows."""
    return principal().allows(scope)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (an open redirect otherwise)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.overview")


# Scripts, styles and images from the API only (the vendored files), no inline script, no framing, forms post here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


def no_store(response: Response) -> Response:
    """A tenant's pages are never kept in a shared or browser cache, and load nothing from elsewhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "same-origin"
    return response
