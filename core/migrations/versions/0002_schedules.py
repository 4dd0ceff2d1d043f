"""schedules; jobs.expires_at, schedule_id, schedule_slot

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import core.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('queue', sa.String(length=100), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('max_attempts', sa.Integer(), nullable=True),
    sa.Column('cron', sa.String(length=200), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('interval_seconds', sa.Integer(), nullable=True),
    sa.Column('start_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('misfire', sa.String(length=8), nullable=False),
    sa.Column('misfire_grace_seconds', sa.Integer(), nullable=False),
    sa.Column('catchup_limit', sa.Integer(), nullable=False),
    sa.Column('expires_after_seconds', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('next_fire_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_slot_at', core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_job_id', sa.Uuid(), nullable=True),
    sa.Column('missed_slots', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("misfire IN ('skip', 'all', 'none')", name=op.f('ck_schedules_misfire')),
    sa.CheckConstraint('(cron IS NULL) <> (interval_seconds IS NULL)', name=op.f('ck_schedules_one_cadence')),
    sa.CheckConstraint('interval_seconds IS NULL OR interval_seconds >= 1', name=op.f('ck_schedules_interval_seconds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules'))
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index('ix_schedules_due', ['enabled', 'next_fire_at'], unique=False)
        batch_op.create_index('uq_schedules_tenant_name', ['tenant_id', 'name'], unique=True)

    # Plain ADD COLUMN (an inline REFERENCES on SQLite): a batch rebuild of `jobs` would be slow on a big ledger.
    op.add_column('jobs', sa.Column('expires_at', core.types.UTCDateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':  # SQLite takes a REFERENCES clause in ADD COLUMN, not a constraint
        op.execute('ALTER TABLE jobs ADD COLUMN schedule_id CHAR(32) '
                   'CONSTRAINT fk_jobs_schedule_id_schedules REFERENCES schedules (id) ON DELETE SET NULL')
    else:
        op.add_column('jobs', sa.Column('schedule_id', sa.Uuid(), nullable=True))
        op.create_foreign_key(op.f('fk_jobs_schedule_id_schedules'), 'jobs', 'schedules', ['schedule_id'], ['id'],
                              ondelete='SET NULL')
    op.add_column('jobs', sa.Column('schedule_slot', core.types.UTCDateTime(timezone=True), nullable=True))
    op.create_index('uq_jobs_schedule_slot', 'jobs', ['schedule_id', 'schedule_slot'], unique=True)



def downgrade() -> None:
    op.drop_index('uq_jobs_schedule_slot', table_name='jobs')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_jobs_schedule_id_schedules'), 'jobs', type_='foreignkey')
    for column in ('schedule_slot', 'schedule_id', 'expires_at'):
        op.drop_column('jobs', column)  # SQLite >= 3.35 drops a column in place

    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index('uq_schedules_tenant_name')
        batch_op.drop_index('ix_schedules_due')

    op.drop_table('schedules')
