"""The job list's failed and cancelled jobs get an index of their own; the waiting jobs' index covers the reconciler's
weighing of a queue's messages

- ix_jobs_tenant_unsuccessful: `GET /v1/jobs?status=failed` read the tenant's history newest first through
  (tenant_id, created_at) until it had a page: 14 succeeded rows for every failed one in a ledger like the benchmark's,
  and the whole history for a tenant with few failures. A succeeded job never enters it; a failed or cancelled one
  enters it once, as it ends.
- ix_jobs_waiting gains tenant_id and message_jobs: the reconciler's sum of a queue's messages (and its paused-queue
  check, by tenant) read every queued row from the table, 1.7 s behind 2,000,000 queued jobs on PostgreSQL.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

UNSUCCESSFUL = sa.text("status IN ('failed', 'cancelled')")
WAITING = sa.text("status IN ('scheduled', 'queued', 'retrying')")
WAITING_BEFORE = ['queue', 'status', 'published_at']
WAITING_AFTER = [*WAITING_BEFORE, 'tenant_id', 'message_jobs']


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # CONCURRENTLY: a big ledger keeps taking submits and completions while the indexes are built; the new waiting
        # index is built beside the old one, so the reconciler's scans always have one
        with op.get_context().autocommit_block():
            op.create_index('ix_jobs_tenant_unsuccessful', 'jobs', ['tenant_id', 'created_at'],
                            postgresql_where=UNSUCCESSFUL, postgresql_concurrently=True)
            op.create_index('ix_jobs_waiting_0017', 'jobs', WAITING_AFTER, postgresql_where=WAITING,
                            postgresql_concurrently=True)
            op.drop_index('ix_jobs_waiting', table_name='jobs', postgresql_concurrently=True)
            op.execute('ALTER INDEX ix_jobs_waiting_0017 RENAME TO ix_jobs_waiting')
        return
    op.create_index('ix_jobs_tenant_unsuccessful', 'jobs', ['tenant_id', 'created_at'], sqlite_where=UNSUCCESSFUL)
    op.drop_index('ix_jobs_waiting', table_name='jobs')
    op.create_index('ix_jobs_waiting', 'jobs', WAITING_AFTER, sqlite_where=WAITING)


def downgrade() -> None:
    op.drop_index('ix_jobs_tenant_unsuccessful', table_name='jobs')
    op.drop_index('ix_jobs_waiting', table_name='jobs')
    op.create_index('ix_jobs_waiting', 'jobs', WAITING_BEFORE, postgresql_where=WAITING, sqlite_where=WAITING)
