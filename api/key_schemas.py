"""Pydantic models of /v1/keys: a key to create, a key as listed (never its secret), a new key with its token."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Strict
from core.keys import Scope

MAX_EXPIRES_IN_DAYS = 3650


class KeyCreate(Strict):
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope), description="What the key may do.")
    name: str | None = Field(default=None, min_length=1, max_length=200, description="A label, e.g. `ci`.")
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_EXPIRES_IN_DAYS, description="The key stops working this many days from now."
    )


class KeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The key's public id: the part of the token after `cvk_`.")
    tenant_id: str
    name: str | None
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    token: str = Field(description="The key itself: shown only in this response, stored nowhere.")


class KeyList(BaseModel):
    items: list[KeyRead]
