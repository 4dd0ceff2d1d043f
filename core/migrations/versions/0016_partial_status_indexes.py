"""The reconciler's and the finished jobs' indexes made partial to the rows they serve (core/models.py)

The (status, column) and (queue, status) indexes held every row, so each status change of every job moved it in
all five; the partial ones hold only the rows of their status (finished rows, for ix_jobs_finished; jobs not started
yet, for ix_jobs_waiting), and an ordinary job's claim and completion enter the running one and leave it. The waiting
jobs' expiry gets an index of its own: the reconciler's scan read every waiting row through the old status indexes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

WAITING = "status IN ('scheduled', 'queued', 'retrying')"
NEW = {
    'ix_jobs_scheduled_run_at': (['run_at'], "status = 'scheduled'"),
    'ix_jobs_retrying_next_attempt_at': (['next_attempt_at'], "status = 'retrying'"),
    'ix_jobs_running_lease_until': (['lease_until'], "status = 'running'"),
    'ix_jobs_expiring': (['expires_at'], f"expires_at IS NOT NULL AND {WAITING}"),
    'ix_jobs_waiting': (['queue', 'status', 'published_at'], WAITING),
    'ix_jobs_finished': (['status', 'finished_at'], 'finished_at IS NOT NULL'),
}
OLD = {
    'ix_jobs_status_run_at': ['status', 'run_at'],
    'ix_jobs_status_next_attempt_at': ['status', 'next_attempt_at'],
    'ix_jobs_status_lease_until': ['status', 'lease_until'],
    'ix_jobs_status_finished': ['status', 'finished_at'],
    'ix_jobs_queue_status': ['queue', 'status'],
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    if postgres:
        # CONCURRENTLY: a big ledger keeps taking submits and completions while the indexes are built and dropped
        with op.get_context().autocommit_block():
            for name, (columns, where) in NEW.items():
                op.create_index(name, 'jobs', columns, postgresql_where=sa.text(where), postgresql_concurrently=True)
            for name in OLD:
                op.drop_index(name, table_name='jobs', postgresql_concurrently=True)
        return
    for name, (columns, where) in NEW.items():
        op.create_index(name, 'jobs', columns, sqlite_where=sa.text(where))
    for name in OLD:
        op.drop_index(name, table_name='jobs')


def downgrade() -> None:
    for name, columns in OLD.items():
        op.create_index(name, 'jobs', columns)
    for name in NEW:
        op.drop_index(name, table_name='jobs')
