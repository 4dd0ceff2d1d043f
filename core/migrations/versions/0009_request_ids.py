"""jobs.request_id: the API request that submitted the job, on every log line of its attempts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('request_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'request_id')  # in place (SQLite >= 3.35): a batch copy of a big ledger would be slow
