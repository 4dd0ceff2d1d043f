"""tenant_usage (each tenant's unfinished jobs as last counted) and the partial index that counts them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.types import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('scheduled', 'queued', 'running', 'retrying')")


def upgrade() -> None:
    op.create_table(
        'tenant_usage',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('active_jobs', sa.BigInteger(), nullable=False),
        sa.Column('count_since', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_tenant_usage')),
    )
    op.create_index('ix_jobs_tenant_active', 'jobs', ['tenant_id', 'created_at'],
                    postgresql_where=ACTIVE, sqlite_where=ACTIVE)


def downgrade() -> None:
    op.drop_index('ix_jobs_tenant_active', table_name='jobs')
    op.drop_table('tenant_usage')
