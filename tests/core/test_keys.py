"""API keys in core: the token format, the keyed hash, verification, and the server secret shared by processes."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core.keys import (
    BadKeyRequest,
    KeyInvalid,
    create_key,
    key_id_of,
    load_key,
    new_token,
    revoke_key,
    touch_key,
    verify,
)
from core.models import ApiKey
from core.server_secret import server_secret
from core.settings import Settings
from core.types import utcnow

SECRET = b"s" * 32


def test_tokens_are_high_entropy_with_a_recognisable_prefix() -> None:
    tokens = {new_token()[1] for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("cvk_") and len(token) == 4 + 16 + 1 + 43
        assert key_id_of(token) == token[4:20]
    for bad in ("", "cvk_", "cvk_xyz_abc", "CVK_" + "0" * 16 + "_" + "a" * 43, "cvk_" + "0" * 16 + "_" + "a" * 42):
        with pytest.raises(KeyInvalid):
            key_id_of(bad)


def test_verify(session: Session) -> None:
    key, token = create_key(session, server_secret=SECRET, tenant_id="acme", scopes=["jobs:read"], created_by="t")
    session.commit()
    now = utcnow()
    principal = verify(load_key(session, key.id), token, server_secret=SECRET, now=now)
    assert (principal.key_id, principal.tenant_id, principal.scopes) == (key.id, "acme", frozenset({"jobs:read"}))
    assert principal.allows("jobs:read") and not principal.allows("jobs:write")  # type: ignore[arg-type]
    with pytest.raises(KeyInvalid, match="not known"):
        verify(load_key(session, key.id), token, server_secret=b"another secret", now=now)
    with pytest.raises(KeyInvalid, match="not known"):
        verify(None, token, server_secret=SECRET, now=now)
    revoke_key(session, key.id, tenant_id="acme", actor="t")
    session.commit()
    with pytest.raises(KeyInvalid, match="revoked"):
        verify(load_key(session, key.id), token, server_secret=SECRET, now=now)
    soon, soon_token = create_key(session, server_secret=SECRET, tenant_id="acme", scopes=["admin"], created_by="t",
                                  expires_in=timedelta(hours=1))  # fmt: skip
    session.commit()
    verify(load_key(session, soon.id), soon_token, server_secret=SECRET, now=now)
    with pytest.raises(KeyInvalid, match="expired"):
        verify(load_key(session, soon.id), soon_token, server_secret=SECRET, now=now + timedelta(hours=2))


def test_bad_tenants_and_scopes_are_refused(session: Session) -> None:
    for tenant, scopes in (("Acme", ["admin"]), ("", ["admin"]), ("a" * 65, ["admin"]), ("acme", []),
                           ("acme", ["root"])):  # fmt: skip
        with pytest.raises(BadKeyRequest):
            create_key(session, server_secret=SECRET, tenant_id=tenant, scopes=scopes, created_by="t")


def test_last_use_is_written_at_most_once_per_interval(session: Session) -> None:
    key, _ = create_key(session, server_secret=SECRET, tenant_id="acme", scopes=["admin"], created_by="t")
    session.commit()
    first = utcnow()
    touch_key(session, key.id, now=first, every=timedelta(minutes=1))
    touch_key(session, key.id, now=first + timedelta(seconds=30), every=timedelta(minutes=1))
    session.commit()
    assert session.get_one(ApiKey, key.id, populate_existing=True).last_used_at == first
    later = first + timedelta(minutes=2)
    touch_key(session, key.id, now=later, every=timedelta(minutes=1))
    session.commit()
    assert session.get_one(ApiKey, key.id, populate_existing=True).last_used_at == later


def test_the_server_secret_is_made_once_private_and_shared(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    with ThreadPoolExecutor(8) as pool:  # processes starting together agree on one secret
        secrets = set(pool.map(lambda _: server_secret(settings), range(16)))
    assert len(secrets) == 1 and len(next(iter(secrets))) == 32
    path = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no drafts left behind
    assert server_secret(Settings(data_dir=tmp_path / "var", secret_key="from-env")) == b"from-env"
