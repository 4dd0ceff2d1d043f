"""API keys: the token format, the keyed hash that is all the database keeps, scopes, and create/list/revoke/verify.

A token is `cvk_<id>_<secret>`: `cvk_` lets secret scanners find a leaked one, the id (16 hex digits, public) finds
its row, and the secret is 256 random bits in base62. The row keeps HMAC-SHA256(server secret, token), compared in
constant time (ADR 0009). Functions take the caller's session first and never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.audit import record_audit
from core.errors import ConveyorError
from core.models import ApiKey
from core.types import utcnow

TOKEN_PREFIX = "cvk_"  # noqa: S105 - the public prefix, not a secret
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LENGTH = 43  # 62**43 > 2**256
TOKEN_PATTERN = re.compile(r"cvk_(?P<id>[0-9a-f]{16})_[0-9A-Za-z]{43}")
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class Scope(StrEnum):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_WRITE = "schedules:write"
    WEBHOOKS_WRITE = "webhooks:write"
    ADMIN = "admin"  # every other scope of its tenant, plus keys and queue operations
    METRICS = "metrics"  # GET /metrics: every tenant's numbers, so an admin key does not have it unless given


class KeyNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class KeyInvalid(ConveyorError):
    """Why a presented token does not authenticate (missing, malformed, unknown, revoked, expired)."""

    slug, status, title = "unauthorized", 401, "Unauthorized"


class BadKeyRequest(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key of one tenant with its scopes."""

    key_id: str
    tenant_id: str
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or (Scope.ADMIN in self.scopes and scope is not Scope.METRICS)


@dataclass(frozen=True)
class KeyRecord:
    """What verifying a token needs of its row, detached from any session (the API caches it for a few seconds)."""

    id: str
    tenant_id: str
    scopes: frozenset[str]
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyRecord:
        return cls(key.id, key.tenant_id, frozenset(key.scopes), key.secret_hash, key.expires_at, key.revoked_at)


def hash_token(server_secret: bytes, token: str) -> str:
    return hmac.new(server_secret, token.encode(), hashlib.sha256).hexdigest()


def key_id_of(token: str) -> str:
    """The id inside a well-formed token; KeyInvalid for anything else."""
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise KeyInvalid("The API key is malformed: Conveyor keys look like cvk_<16 hex digits>_<43 letters/digits>.")
    return match["id"]


def new_token() -> tuple[str, str]:
    """(key id, token) of a fresh key."""
    key_id = secrets.token_hex(8)
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_LENGTH))
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secret}"


def parse_scopes(raw: Iterable[str]) -> list[str]:
    scopes = sorted(set(raw))
    unknown = [s for s in scopes if s not in Scope.__members__.values()]
    if unknown or not scopes:
        known = ", ".join(s.value for s in Scope)
        message = f"unknown: {unknown}" if unknown else "empty"
        raise BadKeyRequest(f"Unknown or no scopes {unknown}; give one or more of: {known}.",
                            errors=[{"field": "scopes", "message": message}])  # fmt: skip
    return scopes


def check_tenant(tenant_id: str) -> str:
    if TENANT_PATTERN.fullmatch(tenant_id) is None:
        raise BadKeyRequest("A tenant is 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or digit.",
                            errors=[{"field": "tenant", "message": tenant_id}])  # fmt: skip
    return tenant_id


def create_key(
    session: Session,
    *,
    server_secret: bytes,
    tenant_id: str,
    scopes: Iterable[str],
    name: str | None = None,
    expires_in: timedelta | None = None,
    created_by: str,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key (added, not committed) and its token, which exists nowhere else: show it once."""
    now = now or utcnow()
    key_id, token = new_token()
    key = ApiKey(id=key_id, tenant_id=check_tenant(tenant_id), name=name, scopes=parse_scopes(scopes),
                 secret_hash=hash_token(server_secret, token), created_by=created_by, created_at=now,
                 expires_at=now + expires_in if expires_in else None)  # fmt: skip
    session.add(key)
    record_audit(session, tenant_id=tenant_id, actor=created_by, action="key.created", object_type="key",
                 object_id=key_id, detail={"scopes": key.scopes, "name": name})  # fmt: skip
    return key, token


def list_keys(session: Session, *, tenant_id: str | None) -> list[ApiKey]:
    """A tenant's keys (every tenant's with None: the CLI), newest first."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def get_key(session: Session, key_id: str, *, tenant_id: str | None) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
        raise KeyNotFound(f"No API key with id {key_id!r}.")
    return key


def revoke_key(
    session: Session, key_id: str, *, tenant_id: str | None, actor: str, now: datetime | None = None
) -> ApiKey:
    """Revoke (idempotent: a revoked key stays revoked at its first time)."""
    key = get_key(session, key_id, tenant_id=tenant_id)
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        record_audit(session, tenant_id=key.tenant_id, actor=actor, action="key.revoked", object_type="key",
                     object_id=key.id)  # fmt: skip
    return key


def load_key(session: Session, key_id: str) -> KeyRecord | None:
    key = session.get(ApiKey, key_id)
    return None if key is None else KeyRecord.of(key)


def verify(record: KeyRecord | None, token: str, *, server_secret: bytes, now: datetime) -> Principal:
    """The principal of `token` given its row; KeyInvalid saying why not."""
    if record is None or not hmac.compare_digest(record.secret_hash, hash_token(server_secret, token)):
        raise KeyInvalid("The API key is not known here: check it, or create one with `conveyor keys create`.")
    return usable(record, now=now)


def usable(record: KeyRecord, *, now: datetime) -> Principal:
    """The principal of a key whose token was checked (now, or at a console sign-in): KeyInvalid once it is revoked
    or expired."""
    if record.revoked_at is not None:
        raise KeyInvalid(f"The API key {record.id} was revoked; use another key.")
    if record.expires_at is not None and record.expires_at <= now:
        raise KeyInvalid(f"The API key {record.id} expired at {record.expires_at.isoformat()}; create a new one.")
    return Principal(record.id, record.tenant_id, record.scopes)


def touch_key(session: Session, key_id: str, *, now: datetime, every: timedelta) -> None:
    """Stamp last_used_at unless it was stamped within `every`: at most one write per key per interval."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every))
        .values(last_used_at=now)
    )
