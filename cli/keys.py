"""`conveyor keys`: create, list and revoke API keys straight in the database (no key needed: whoever can reach the
database runs Conveyor), and the admin key `conveyor up` keeps in DATA_DIR/admin.key."""

from __future__ import annotations

import secrets
from datetime import timedelta

import click
from sqlalchemy.orm import Session

from cli.client import ADMIN_KEY_FILE
from core.db import make_engine, make_sessionmaker
from core.errors import ConveyorError
from core.keys import KeyInvalid, Scope, create_key, key_id_of, list_keys, load_key, revoke_key, verify
from core.migrate import upgrade_database
from core.models import ApiKey
from core.private_file import write_private
from core.server_secret import server_secret
from core.settings import Settings
from core.types import utcnow

FLOWER_AUTH_FILE = "flower.auth"
CLI_ACTOR = "cli"


def _session(settings: Settings, *, migrate: bool = True) -> Session:
    """A session on the settings' database; the `keys` commands migrate it first, `conveyor up` already has."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade_database(settings.resolved_database_url)
    return make_sessionmaker(make_engine(settings.resolved_database_url))()


def ensure_admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key of tenant `default` in DATA_DIR/admin.key, made on first start (or when the file's key is not
    valid in this database). Returns (token, made now). The database must be migrated."""
    path = settings.data_dir.resolve() / ADMIN_KEY_FILE
    secret = server_secret(settings)
    with _session(settings, migrate=False) as session:
        if path.exists():
            token = path.read_text().strip()
            try:
                verify(load_key(session, key_id_of(token)), token, server_secret=secret, now=utcnow())
                return token, False
            except KeyInvalid:
                pass  # e.g. another database than the one it was made for: make a new one
        _key, token = create_key(session, server_secret=secret, tenant_id="default", scopes=[Scope.ADMIN],
                                 name="admin (conveyor up)", created_by="conveyor up")  # fmt: skip
        session.commit()
    write_private(path, token, replace=True)
    return token, True


def ensure_flower_auth(settings: Settings) -> str:
    """`user:password` for Flower: CONVEYOR_FLOWER_BASIC_AUTH, or one made once in DATA_DIR/flower.auth."""
    if settings.flower_basic_auth:
        return settings.flower_basic_auth
    path = settings.data_dir.resolve() / FLOWER_AUTH_FILE
    if path.exists():
        return path.read_text().strip()
    return write_private(path, f"admin:{secrets.token_urlsafe(18)}", replace=False)


@click.group()
def keys() -> None:
    """API keys: create, list, revoke (in the database of CONVEYOR_DATABASE_URL; no key needed)."""


@keys.command("create")
@click.option("--tenant", default="default", show_default=True, help="The tenant the key acts in.")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice([s.value for s in Scope]),
              help="Repeat for several; `admin` holds them all.")  # fmt: skip
@click.option("--name", help="A label, e.g. ci or frontend.")
@click.option("--expires-in", "expires_in", type=click.IntRange(1, 3650), help="Days until the key stops working.")
@click.option("--quiet", is_flag=True, help="Print only the key, on one line.")
def keys_create(tenant: str, scopes: tuple[str, ...], name: str | None, expires_in: int | None, quiet: bool) -> None:
    """Create a key and print it: it is shown this once, and only its hash is stored."""
    settings = Settings()
    try:
        with _session(settings) as session:
            key, token = create_key(session, server_secret=server_secret(settings), tenant_id=tenant, scopes=scopes,
                                    name=name, expires_in=timedelta(days=expires_in) if expires_in else None,
                                    created_by=CLI_ACTOR)  # fmt: skip
            session.commit()
    except ConveyorError as exc:
        raise click.ClickException(exc.detail) from None
    if quiet:
        click.echo(token)
        return
    click.echo(token)
    click.echo(f"key {key.id}: tenant {key.tenant_id}, scopes {' '.join(key.scopes)}"
               + (f", expires {key.expires_at.isoformat()}" if key.expires_at else ""), err=True)  # fmt: skip
    click.echo("Keep it now: it is not shown again. Send it as `Authorization: Bearer <key>`.", err=True)


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"  # type: ignore[attr-defined]


def _state(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    return "active"


@keys.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """Every key (never a secret): id, tenant, scopes, name, created, last used, expires, state."""
    with _session(Settings()) as session:
        found = list_keys(session, tenant_id=tenant)
    click.echo(f"{'ID':<16}  {'TENANT':<16}  {'SCOPES':<28}  {'NAME':<20}  {'CREATED':<16}  {'LAST USED':<16}  "
               f"{'EXPIRES':<16}  STATE")  # fmt: skip
    for key in found:
        click.echo(f"{key.id:<16}  {key.tenant_id:<16}  {','.join(key.scopes):<28}  {(key.name or '-'):<20}  "
                   f"{_when(key.created_at):<16}  {_when(key.last_used_at):<16}  {_when(key.expires_at):<16}  "
                   f"{_state(key)}")  # fmt: skip


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after `cvk_`); it stops working within CONVEYOR_AUTH_CACHE_SECONDS."""
    try:
        with _session(Settings()) as session:
            key = revoke_key(session, key_id, tenant_id=None, actor=CLI_ACTOR)
            session.commit()
    except ConveyorError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"revoked {key.id} (tenant {key.tenant_id}) at {key.revoked_at.isoformat() if key.revoked_at else ''}")
