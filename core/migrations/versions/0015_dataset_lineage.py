"""dataset_versions.inputs: the datasets and versions a derived version read (its lineage)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
    op.add_column('dataset_versions', sa.Column('inputs', json, nullable=True))


def downgrade() -> None:
    op.drop_column('dataset_versions', 'inputs')
