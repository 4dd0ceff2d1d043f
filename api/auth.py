"""Who may call /v1: a bearer API key, the scope each operation declares with `@requires`, the tenant it acts in.

Every /v1 operation needs a key; one without a declared scope needs `admin`. `/healthz` and `/readyz` stay open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.extension import conveyor, db
from api.problems import problem
from core import logs
from core.audit import record_audit
from core.keys import KeyInvalid, KeyRecord, Principal, Scope, key_id_of, load_key, touch_key, usable, verify
from core.read_tokens import verify_read_token
from core.types import utcnow

log = logging.getLogger(__name__)

SCHEME = "ApiKey"
SECURITY_SCHEMES = {
    SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "cvk_<id>_<secret>",
        "description": "An API key: `Authorization: Bearer cvk_...`. Each operation lists the scope it needs; "
        "`admin` holds every scope.",
    }
}
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is this coarse: one write per key and minute, not per request
CACHE_LIMIT = 10_000  # keys held per process; past it the cache starts over
AUTH_OFF = Principal(key_id="auth-off", tenant_id="default", scopes=frozenset({Scope.ADMIN.value}))
# The operations a job's read token (`?access_token=`) opens, for that job only.
READ_TOKEN_ENDPOINTS = frozenset({"jobs.get_one", "job_stream.stream"})

View = TypeVar("View", bound=Callable[..., Any])


def requires(scope: Scope | None) -> Callable[[View], View]:
    """Declare the scope an operation needs (None: any key, for what a tenant may always know of itself, such as
    its usage). Put it directly under the route decorator: it marks the function the route registered, which the
    check reads and /openapi.json shows."""

    def mark(view: View) -> View:
        view.required_scope = scope  # type: ignore[attr-defined]
        view.__dict__.setdefault("_spec", {})["security"] = [{SCHEME: [] if scope is None else [scope.value]}]
        return view

    return mark


@dataclass
class Authenticator:
    """Turns an Authorization header into a Principal. Key rows are reused for `cache_seconds` (revoking through
    this process drops its copy at once)."""

    server_secret: bytes
    read_sessions: sessionmaker[Session]
    sessions: sessionmaker[Session]
    cache_seconds: float
    _cache: dict[str, tuple[float, KeyRecord]] = field(default_factory=dict)
    _touched: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise KeyInvalid("Send an API key: `Authorization: Bearer cvk_...` (`conveyor up` prints one).")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KeyInvalid("The Authorization header must be `Bearer <API key>`.")
        token = token.strip()
        key_id = key_id_of(token)
        now = utcnow()
        principal = verify(self._record(key_id), token, server_secret=self.server_secret, now=now)
        self._touch(key_id)
        return principal

    def session_principal(self, key_id: str, *, now: datetime) -> Principal:
        """The principal of a console session's key, signed in earlier with its token: KeyInvalid once the key is
        revoked, expired or deleted (a cached row is at most `cache_seconds` old)."""
        record = self._record(key_id)
        if record is None:
            raise KeyInvalid(f"The API key {key_id} is not known here.")
        return usable(record, now=now)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)

    def _record(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        with self.read_sessions() as session:
            record = load_key(session, key_id)
        if record is not None:  # unknown ids are not kept: random ones must not fill the cache
            with self._lock:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                self._cache[key_id] = (time.monotonic(), record)
        return record

    def _touch(self, key_id: str) -> None:
        """Stamp last_used_at at most once a minute per process (and the UPDATE skips a row stamped within it)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key_id, -LAST_USED_EVERY.total_seconds()) < LAST_USED_EVERY.total_seconds():
                return
            self._touched[key_id] = now
        try:
            with self.sessions() as session, session.begin():
                touch_key(session, key_id, now=utcnow(), every=LAST_USED_EVERY)
        except SQLAlchemyError:  # a usage stamp is not worth failing the request for
            log.warning("could not record the last use of key %s", key_id, exc_info=True)


def principal() -> Principal:
    """The caller of this request (set by `authenticate` before every /v1 view)."""
    found: Principal = g.principal
    return found


def tenant() -> str:
    return principal().tenant_id


def audit(action: str, object_type: str, object_id: object, detail: dict[str, object] | None = None) -> None:
    """Record in the request's session (committed with the change) that this request's key did `action`."""
    record_audit(db(), tenant_id=tenant(), actor=principal().key_id, action=action, object_type=object_type,
                 object_id=str(object_id), detail=detail)  # fmt: skip


def _read_token_caller() -> Principal | None:
    """The caller a read token makes, on the operations it opens and for the job it names (None: no token here)."""
    token = request.args.get("access_token")
    if token is None or request.endpoint not in READ_TOKEN_ENDPOINTS or "Authorization" in request.headers:
        return None
    ext = conveyor()
    grant = verify_read_token(ext.authenticator.server_secret, token, max_age=ext.settings.read_token_seconds)
    if str(grant.job_id) != (request.view_args or {}).get("job_id"):
        raise KeyInvalid(f"This read token reads job {grant.job_id} only.")
    return Principal(key_id=f"read-token:{grant.issued_by}", tenant_id=grant.tenant_id,
                     scopes=frozenset({Scope.JOBS_READ.value}))  # fmt: skip


def authenticate() -> Response | None:
    """before_request: every /v1 operation needs a key with its scope; the answer otherwise is 401 or 403."""
    guarded = request.path.startswith("/v1/") or request.path == "/metrics"
    if not guarded or request.endpoint is None or request.method == "OPTIONS":
        return None  # open routes; 404/405, which say nothing about any object; CORS preflights (no data)
    view = current_app.view_functions[request.endpoint]
    scope: Scope | None = getattr(view, "required_scope", Scope.ADMIN)
    ext = conveyor()
    if ext.settings.auth == "off":
        if request.remote_addr not in LOOPBACK_ADDRESSES:
            return problem(403, detail="CONVEYOR_AUTH=off: this API answers clients on loopback only.")
        g.principal = AUTH_OFF
        return None
    try:
        caller = _read_token_caller() or ext.authenticator.authenticate(request.headers.get("Authorization"))
    except KeyInvalid as exc:
        return problem(401, slug=exc.slug, title=exc.title, detail=exc.detail,
                       headers={"WWW-Authenticate": 'Bearer realm="conveyor"'})  # fmt: skip
    if scope is not None and not caller.allows(scope):
        rule = request.url_rule.rule if request.url_rule else request.path
        return problem(
            403,
            detail=f"{request.method} {rule} needs the `{scope.value}` scope; key {caller.key_id} has "
            f"{', '.join(sorted(caller.scopes))}. Use a key with that scope (`conveyor keys create --scope "
            f"{scope.value}`).",
        )
    g.principal = caller
    logs.bind(tenant=caller.tenant_id, key_id=caller.key_id)  # on every later line of this request
    return None
