"""webhooks, their deliveries and attempts, the dispatcher's cursor over job_events; jobs.callback_url

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.types import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
CALLBACKS = sa.text("kind = 'callbacks'")


def upgrade() -> None:
    op.add_column('jobs', sa.Column('callback_url', sa.Text(), nullable=True))
    op.create_table(
        'webhooks',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('event_types', JSON, nullable=False),
        sa.Column('job_types', JSON, nullable=True),
        sa.Column('description', sa.String(length=200), nullable=True),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('previous_secret', sa.String(length=100), nullable=True),
        sa.Column('previous_secret_expires_at', UTCDateTime(), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('endpoint', 'callbacks')", name=op.f('ck_webhooks_kind')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
    )
    op.create_index('ix_webhooks_tenant_created', 'webhooks', ['tenant_id', 'created_at'])
    op.create_index('uq_webhooks_tenant_callbacks', 'webhooks', ['tenant_id'], unique=True,
                    postgresql_where=CALLBACKS, sqlite_where=CALLBACKS)
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('webhook_id', sa.Uuid(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('dedupe_key', sa.String(length=120), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'], ondelete='CASCADE',
                                name=op.f('fk_webhook_deliveries_webhook_id_webhooks')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('dedupe_key', name=op.f('uq_webhook_deliveries_dedupe_key')),
    )
    op.create_index('ix_webhook_deliveries_webhook_created', 'webhook_deliveries', ['webhook_id', 'created_at'])
    op.create_table(
        'webhook_attempts',
        sa.Column('id', EVENT_ID, autoincrement=True, nullable=False),
        sa.Column('delivery_id', sa.String(length=40), nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('latency_ms', sa.Float(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('response', sa.Text(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], ondelete='CASCADE',
                                name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    )
    op.create_index('ix_webhook_attempts_delivery', 'webhook_attempts', ['delivery_id', 'id'])
    op.create_table(
        'webhook_cursor',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last_event_id', sa.BigInteger(), nullable=False),
        sa.Column('gaps', JSON, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_cursor')),
    )


def downgrade() -> None:
    op.drop_table('webhook_cursor')
    op.drop_index('ix_webhook_attempts_delivery', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('ix_webhook_deliveries_webhook_created', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('uq_webhooks_tenant_callbacks', table_name='webhooks')
    op.drop_index('ix_webhooks_tenant_created', table_name='webhooks')
    op.drop_table('webhooks')
    op.drop_column('jobs', 'callback_url')  # in place (SQLite >= 3.35): a batch copy of a big ledger would be slow
