"""Dataset names unique per tenant (409 naming the existing dataset). Names that repeat already keep their oldest
holder; the others get their id appended, so no dataset is lost or merged.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    datasets = sa.table('datasets', sa.column('id', sa.Uuid()), sa.column('tenant_id', sa.String()),
                        sa.column('name', sa.String()), sa.column('created_at', sa.DateTime()))  # fmt: skip
    connection = op.get_bind()
    rows = connection.execute(sa.select(datasets.c.id, datasets.c.tenant_id, datasets.c.name)
                              .order_by(datasets.c.tenant_id, datasets.c.name, datasets.c.created_at,
                                        datasets.c.id)).all()  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if (row.tenant_id, row.name) in seen:
            renamed = f"{row.name[:163]} ({row.id})"  # 200 characters at most, and unique
            connection.execute(sa.update(datasets).where(datasets.c.id == row.id).values(name=renamed))
        seen.add((row.tenant_id, row.name))
    op.create_index('uq_datasets_tenant_name', 'datasets', ['tenant_id', 'name'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_datasets_tenant_name', table_name='datasets')
