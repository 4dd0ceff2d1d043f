"""workflows, their steps and events; jobs.workflow_id, workflow_step, map_index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.types import UTCDateTime

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'workflows',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('failure_policy', sa.String(length=16), nullable=False),
        sa.Column('failed_step', sa.String(length=100), nullable=True),
        sa.Column('error', JSON, nullable=True),
        sa.Column('steps_total', sa.Integer(), nullable=False),
        sa.Column('retries', sa.Integer(), nullable=False),
        sa.Column('sweep_pending', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=True),
        sa.Column('request_hash', sa.String(length=64), nullable=True),
        sa.Column('actor', sa.String(length=64), nullable=True),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.CheckConstraint("failure_policy IN ('fail_fast', 'continue')", name=op.f('ck_workflows_failure_policy')),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'cancelled')",
                           name=op.f('ck_workflows_status')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workflows')),
    )
    op.create_index('ix_workflows_tenant_created', 'workflows', ['tenant_id', 'created_at', 'id'])
    key = sa.text('idempotency_key IS NOT NULL')
    op.create_index('uq_workflows_tenant_idempotency_key', 'workflows', ['tenant_id', 'idempotency_key'], unique=True,
                    postgresql_where=key, sqlite_where=key)
    sweep = sa.text('sweep_pending')
    op.create_index('ix_workflows_sweep', 'workflows', ['id'], postgresql_where=sweep, sqlite_where=sweep)
    unfinished = sa.text('finished_at IS NULL')
    op.create_index('ix_workflows_unfinished', 'workflows', ['id'], postgresql_where=unfinished,
                    sqlite_where=unfinished)
    op.create_index('ix_workflows_status_finished', 'workflows', ['status', 'finished_at'])
    op.create_table(
        'workflow_steps',
        sa.Column('workflow_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('queue', sa.String(length=100), nullable=True),
        sa.Column('priority', sa.Integer(), nullable=True),
        sa.Column('max_attempts', sa.Integer(), nullable=True),
        sa.Column('map_over', JSON, nullable=True),
        sa.Column('depends_on', JSON, nullable=False),
        sa.Column('release_when', sa.String(length=16), nullable=False),
        sa.Column('parents_pending', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=True),
        sa.Column('jobs_total', sa.Integer(), nullable=False),
        sa.Column('jobs_succeeded', sa.Integer(), nullable=False),
        sa.Column('jobs_failed', sa.Integer(), nullable=False),
        sa.Column('jobs_cancelled', sa.Integer(), nullable=False),
        sa.Column('error', JSON, nullable=True),
        sa.Column('released_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.CheckConstraint("release_when IN ('all_succeeded', 'all_done')",
                           name=op.f('ck_workflow_steps_release_when')),
        sa.CheckConstraint("status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')",
                           name=op.f('ck_workflow_steps_status')),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_workflow_steps_workflow_id_workflows'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('workflow_id', 'name', name=op.f('pk_workflow_steps')),
    )
    op.create_table(
        'workflow_events',
        sa.Column('id', EVENT_ID, autoincrement=True, nullable=False),
        sa.Column('workflow_id', sa.Uuid(), nullable=False),
        sa.Column('step', sa.String(length=100), nullable=True),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('detail', JSON, nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'],
                                name=op.f('fk_workflow_events_workflow_id_workflows'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workflow_events')),
    )
    op.create_index('ix_workflow_events_workflow', 'workflow_events', ['workflow_id', 'id'])
    # Plain ADD COLUMN (an inline REFERENCES on SQLite), as 0002 did: a batch rebuild of `jobs` would be slow on a
    # big ledger.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE jobs ADD COLUMN workflow_id CHAR(32) '
                   'CONSTRAINT fk_jobs_workflow_id_workflows REFERENCES workflows (id) ON DELETE SET NULL')
    else:
        op.add_column('jobs', sa.Column('workflow_id', sa.Uuid(), nullable=True))
        op.create_foreign_key(op.f('fk_jobs_workflow_id_workflows'), 'jobs', 'workflows', ['workflow_id'], ['id'],
                              ondelete='SET NULL')
    op.add_column('jobs', sa.Column('workflow_step', sa.String(length=100), nullable=True))
    op.add_column('jobs', sa.Column('map_index', sa.Integer(), nullable=True))
    workflow = sa.text('workflow_id IS NOT NULL')
    # Every existing row has a NULL workflow_id: the partial index starts empty, so it is quick to build.
    op.create_index('ix_jobs_workflow', 'jobs', ['workflow_id', 'workflow_step', 'map_index'],
                    postgresql_where=workflow, sqlite_where=workflow)


def downgrade() -> None:
    op.drop_index('ix_jobs_workflow', table_name='jobs')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_jobs_workflow_id_workflows'), 'jobs', type_='foreignkey')
    for column in ('map_index', 'workflow_step', 'workflow_id'):
        op.drop_column('jobs', column)
    op.drop_index('ix_workflow_events_workflow', table_name='workflow_events')
    op.drop_table('workflow_events')
    op.drop_table('workflow_steps')
    op.drop_index('ix_workflows_status_finished', table_name='workflows')
    op.drop_index('ix_workflows_unfinished', table_name='workflows')
    op.drop_index('ix_workflows_sweep', table_name='workflows')
    op.drop_index('uq_workflows_tenant_idempotency_key', table_name='workflows')
    op.drop_index('ix_workflows_tenant_created', table_name='workflows')
    op.drop_table('workflows')
