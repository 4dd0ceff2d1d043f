"""queue_pauses (a paused queue, per tenant or for all); heartbeats of the maintenance ticks; jobs by status and
finished_at, and by parent_id

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.types import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'queue_pauses',
        sa.Column('queue', sa.String(length=100), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('paused_by', sa.String(length=255), nullable=True),
        sa.Column('paused_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('queue', 'tenant_id', name=op.f('pk_queue_pauses')),
    )
    op.create_table(
        'heartbeats',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('beat_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_heartbeats')),
    )
    parent = sa.text('parent_id IS NOT NULL')
    if op.get_bind().dialect.name == 'postgresql':
        # CONCURRENTLY: a big ledger keeps taking submits and completions while the indexes are built
        with op.get_context().autocommit_block():
            op.create_index('ix_jobs_status_finished', 'jobs', ['status', 'finished_at'], postgresql_concurrently=True)
            op.create_index('ix_jobs_parent', 'jobs', ['parent_id'], postgresql_where=parent,
                            postgresql_concurrently=True)
    else:
        op.create_index('ix_jobs_status_finished', 'jobs', ['status', 'finished_at'])
        op.create_index('ix_jobs_parent', 'jobs', ['parent_id'], sqlite_where=parent)


def downgrade() -> None:
    op.drop_index('ix_jobs_parent', table_name='jobs')
    op.drop_index('ix_jobs_status_finished', table_name='jobs')
    op.drop_table('heartbeats')
    op.drop_table('queue_pauses')
