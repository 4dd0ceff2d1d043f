"""dataset_versions.schema_changes: the columns an ingest widened (integer → float, date → timestamp) as it met values
its sample had not shown

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    op.add_column('dataset_versions', sa.Column('schema_changes', json, nullable=True))


def downgrade() -> None:
    op.drop_column('dataset_versions', 'schema_changes')
