"""Read tokens: short-lived and signed, each reads one job (its GET and its event stream). A browser's EventSource
cannot send an Authorization header, so a page follows a job with `?access_token=cvr_...` instead of a key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from core.keys import KeyInvalid

PREFIX = "cvr_"
SALT = "conveyor.job-read-token"  # keeps these signatures apart from anything else signed with the server secret


@dataclass(frozen=True)
class ReadGrant:
    tenant_id: str
    job_id: uuid.UUID
    issued_by: str  # the key that asked for it


def _serializer(server_secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(server_secret, salt=SALT)


def issue_read_token(server_secret: bytes, grant: ReadGrant) -> str:
    payload = {"t": grant.tenant_id, "j": str(grant.job_id), "k": grant.issued_by}
    return PREFIX + _serializer(server_secret).dumps(payload)


def verify_read_token(server_secret: bytes, token: str, *, max_age: int) -> ReadGrant:
    if not token.startswith(PREFIX):
        raise KeyInvalid("The access_token is not a Conveyor read token (they start with cvr_).")
    try:
        payload = _serializer(server_secret).loads(token.removeprefix(PREFIX), max_age=max_age)
    except SignatureExpired:
        raise KeyInvalid("The read token expired; ask for a new one (POST /v1/jobs/{id}/read-token).") from None
    except BadSignature:
        raise KeyInvalid("The read token is not valid here.") from None
    return ReadGrant(tenant_id=payload["t"], job_id=uuid.UUID(payload["j"]), issued_by=payload["k"])
