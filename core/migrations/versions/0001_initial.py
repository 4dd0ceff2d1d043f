"""initial schema: jobs, job_results, job_events

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import core.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('queue', sa.String(length=100), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_until', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('published_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('unique_key', sa.String(length=255), nullable=True),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('progress_done', sa.BigInteger(), nullable=True),
    sa.Column('progress_total', sa.BigInteger(), nullable=True),
    sa.Column('progress_message', sa.Text(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.Column('error', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_status')),
    sa.CheckConstraint('max_attempts >= 1', name=op.f('ck_jobs_max_attempts')),
    sa.CheckConstraint('priority BETWEEN 0 AND 9', name=op.f('ck_jobs_priority')),
    sa.ForeignKeyConstraint(['parent_id'], ['jobs.id'], name=op.f('fk_jobs_parent_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_queue_status', ['queue', 'status'], unique=False)
        batch_op.create_index('ix_jobs_status_lease_until', ['status', 'lease_until'], unique=False)
        batch_op.create_index('ix_jobs_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_jobs_status_run_at', ['status', 'run_at'], unique=False)
        batch_op.create_index('ix_jobs_tenant_created', ['tenant_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('uq_jobs_active_unique_key', ['tenant_id', 'unique_key'], unique=True, postgresql_where=sa.text("status NOT IN ('cancelled', 'failed', 'succeeded')"), sqlite_where=sa.text("status NOT IN ('cancelled', 'failed', 'succeeded')"))
        batch_op.create_index('uq_jobs_tenant_idempotency_key', ['tenant_id', 'idempotency_key'], unique=True)

    op.create_table('job_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_events_job_id'), ['job_id'], unique=False)

    op.create_table('job_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('file_ref', sa.Text(), nullable=True),
    sa.Column('created_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_results_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_results')),
    sa.UniqueConstraint('job_id', name=op.f('uq_job_results_job_id'))
    )


def downgrade() -> None:
    op.drop_table('job_results')
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_events_job_id'))

    op.drop_table('job_events')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_tenant_idempotency_key')
        batch_op.drop_index('uq_jobs_active_unique_key', postgresql_where=sa.text("status NOT IN ('cancelled', 'failed', 'succeeded')"), sqlite_where=sa.text("status NOT IN ('cancelled', 'failed', 'succeeded')"))
        batch_op.drop_index('ix_jobs_tenant_created')
        batch_op.drop_index('ix_jobs_status_run_at')
        batch_op.drop_index('ix_jobs_status_next_attempt_at')
        batch_op.drop_index('ix_jobs_status_lease_until')
        batch_op.drop_index('ix_jobs_queue_status')

    op.drop_table('jobs')
