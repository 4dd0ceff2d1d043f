"""PostgreSQL vacuums the jobs table after 1 % of it changed (plus 10,000 rows), not 20 %

Every job's claim and completion leave dead row versions in `jobs` and entries for them in the partial indexes the
reconciler scans (waiting, running). Until a vacuum removes them, each tick walks past them: on this VM the tick
went from 22 ms to 61 ms over 240,000 jobs of churn without a vacuum, and stayed at 7-15 ms with one after every
10,000 jobs (bench/churn.py; docs/performance.md, issue 22's third slice). PostgreSQL's default waits for dead rows worth 20 %
of the table: 2,000,000 of them in a 10,000,000-job ledger. The same for inserts (the visibility map that lets index-
only scans skip the heap) and for ANALYZE (the planner's statistics; core/planner_stats.py covers a new table's
first minutes, where autovacuum may be off). Storage parameters only: no rewrite, no lock beyond a moment's.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""
from __future__ import annotations

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

SETTINGS = {
    'autovacuum_vacuum_scale_factor': '0.01',
    'autovacuum_vacuum_threshold': '10000',
    'autovacuum_vacuum_insert_scale_factor': '0.01',
    'autovacuum_vacuum_insert_threshold': '10000',
    'autovacuum_analyze_scale_factor': '0.02',
    'autovacuum_analyze_threshold': '10000',
}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE jobs SET ({', '.join(f'{name} = {value}' for name, value in SETTINGS.items())})")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE jobs RESET ({', '.join(SETTINGS)})")
