"""jobs: the key indexes hold only rows that have the key (idempotency key, unique key, schedule slot)

Most jobs have none of the three keys, yet every row version of every job had an entry in each of their unique
indexes (NULLs are distinct, so those entries never enforced anything). PostgreSQL writes a new entry in every
index of the table on each status change (a status change is never a HOT update), so a job's three versions (queued,
running, succeeded) wrote 27 index entries, 9 of them NULL keys; now 18. Uniqueness is unchanged, and the lookups
(`key = value`) imply `key IS NOT NULL`, so both databases still use these indexes for them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TERMINAL = "status NOT IN ('cancelled', 'failed', 'succeeded')"
INDEXES = (
    ('uq_jobs_tenant_idempotency_key', ['tenant_id', 'idempotency_key'], None, 'idempotency_key IS NOT NULL'),
    ('uq_jobs_active_unique_key', ['tenant_id', 'unique_key'], TERMINAL, f'unique_key IS NOT NULL AND {TERMINAL}'),
    ('uq_jobs_schedule_slot', ['schedule_id', 'schedule_slot'], None, 'schedule_id IS NOT NULL'),
)


def _create(name: str, columns: list[str], where: str | None) -> None:
    predicate = None if where is None else sa.text(where)
    op.create_index(name, 'jobs', columns, unique=True, postgresql_where=predicate, sqlite_where=predicate)


def upgrade() -> None:
    for name, columns, _before, after in INDEXES:
        op.drop_index(name, table_name='jobs')
        _create(name, columns, after)


def downgrade() -> None:
    for name, columns, before, _after in INDEXES:
        op.drop_index(name, table_name='jobs')
        _create(name, columns, before)
