"""api_keys (a tenant's keys: public id, keyed hash of the secret, scopes) and audit_events (who changed what)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.types import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('scopes', JSON, nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('last_used_at', UTCDateTime(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=True),
        sa.Column('revoked_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    )
    op.create_index('ix_api_keys_tenant_created', 'api_keys', ['tenant_id', 'created_at'])
    op.create_table(
        'audit_events',
        sa.Column('id', EVENT_ID, autoincrement=True, nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('object_type', sa.String(length=32), nullable=False),
        sa.Column('object_id', sa.String(length=64), nullable=False),
        sa.Column('detail', JSON, nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    )
    op.create_index('ix_audit_events_tenant_created', 'audit_events', ['tenant_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_audit_events_tenant_created', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_index('ix_api_keys_tenant_created', table_name='api_keys')
    op.drop_table('api_keys')
