"""jobs.error_fingerprint and failed_at, the failure groups' index; the failed and retrying jobs already in the
ledger get their fingerprint

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.failures import fingerprint
from core.types import UTCDateTime

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

FAILING = sa.text("status IN ('failed', 'retrying')")
BACKFILL_CHUNK = 1000


def upgrade() -> None:
    op.add_column('jobs', sa.Column('error_fingerprint', sa.String(length=16), nullable=True))
    op.add_column('jobs', sa.Column('failed_at', UTCDateTime(), nullable=True))
    _backfill()
    columns = ['tenant_id', 'error_fingerprint', 'failed_at', 'status']
    if op.get_bind().dialect.name == 'postgresql':
        # CONCURRENTLY: a big ledger keeps taking submits and completions while the index is built
        with op.get_context().autocommit_block():
            op.create_index('ix_jobs_failures', 'jobs', columns, postgresql_where=FAILING, postgresql_concurrently=True)
    else:
        op.create_index('ix_jobs_failures', 'jobs', columns, sqlite_where=FAILING)


def _backfill() -> None:
    """The fingerprint of each failed or retrying job from its recorded error, and its failed_at from when it
    finished (failed) or was last updated (retrying: the failure was its last change), in chunks by id."""
    bind = op.get_bind()
    jobs = sa.table('jobs', sa.column('id', sa.Uuid()), sa.column('type', sa.String()), sa.column('status', sa.String()),
                    sa.column('error', sa.JSON()), sa.column('finished_at', UTCDateTime()),
                    sa.column('updated_at', UTCDateTime()), sa.column('error_fingerprint', sa.String()),
                    sa.column('failed_at', UTCDateTime()))
    after = None
    while True:
        query = sa.select(jobs.c.id, jobs.c.type, jobs.c.error, jobs.c.finished_at, jobs.c.updated_at).where(
            jobs.c.status.in_(['failed', 'retrying'])).order_by(jobs.c.id).limit(BACKFILL_CHUNK)
        if after is not None:
            query = query.where(jobs.c.id > after)
        rows = bind.execute(query).all()
        for row in rows:
            bind.execute(jobs.update().where(jobs.c.id == row.id).values(
                error_fingerprint=fingerprint(row.type, row.error or {}),
                failed_at=row.finished_at or row.updated_at))
        if len(rows) < BACKFILL_CHUNK:
            return
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index('ix_jobs_failures', table_name='jobs')
    op.drop_column('jobs', 'failed_at')
    op.drop_column('jobs', 'error_fingerprint')
