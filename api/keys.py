"""/v1/keys: an admin manages its tenant's API keys — create (the token is shown once), list, read, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from api.auth import principal, requires, tenant
from api.extension import conveyor, db
from api.key_schemas import KeyCreate, KeyCreated, KeyList, KeyRead
from core.keys import Scope, create_key, get_key, list_keys, revoke_key

bp = APIBlueprint("keys", __name__, url_prefix="/v1/keys", tag="Keys")


@bp.post("")
@requires(Scope.ADMIN)
@bp.input(KeyCreate, location="json", arg_name="body")
@bp.output(KeyCreated, status_code=201, description="The new key; `token` is shown only here.")
@bp.doc(summary="Create an API key for this tenant", responses={415: "Not JSON"})
def create(body: KeyCreate) -> Any:
    session = db()
    expires_in = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    key, token = create_key(session, server_secret=conveyor().authenticator.server_secret, tenant_id=tenant(),
                            scopes=body.scopes, name=body.name, expires_in=expires_in,
                            created_by=principal().key_id)  # fmt: skip
    session.commit()
    created = KeyCreated.model_validate({**KeyRead.model_validate(key).model_dump(), "token": token})
    return created, 201, {"Location": url_for("keys.get_one", key_id=key.id)}


@bp.get("")
@requires(Scope.ADMIN)
@bp.output(KeyList)
@bp.doc(summary="List this tenant's API keys, newest first (never their secrets)")
def list_all() -> Any:
    return KeyList(items=[KeyRead.model_validate(k) for k in list_keys(db(), tenant_id=tenant())])


@bp.get("/<key_id>")
@requires(Scope.ADMIN)
@bp.output(KeyRead)
@bp.doc(summary="Read an API key", responses={404: "No such key"})
def get_one(key_id: str) -> Any:
    return KeyRead.model_validate(get_key(db(), key_id, tenant_id=tenant()))


@bp.post("/<key_id>/revoke")
@requires(Scope.ADMIN)
@bp.output(KeyRead)
@bp.doc(summary="Revoke an API key (it stops working at once)", responses={404: "No such key"})
def revoke(key_id: str) -> Any:
    session = db()
    key = revoke_key(session, key_id, tenant_id=tenant(), actor=principal().key_id)
    session.commit()
    conveyor().authenticator.forget(key.id)
    return KeyRead.model_validate(key)
