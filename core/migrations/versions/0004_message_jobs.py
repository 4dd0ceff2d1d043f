"""jobs.message_jobs: how many jobs the message that last published a row wakes up

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: SQLite adds (and, since 3.35, drops) a column in place, and a batch-mode copy of
# `jobs` would rebuild its foreign keys from reflection (it lost ON DELETE SET NULL of schedule_id).
def upgrade() -> None:
    op.add_column('jobs', sa.Column('message_jobs', sa.Integer(), server_default=sa.text('1'), nullable=False))


def downgrade() -> None:
    op.drop_column('jobs', 'message_jobs')
