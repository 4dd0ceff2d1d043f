"""Statistics for PostgreSQL's planner on the ledger's hot table, where autovacuum has not provided them (yet).

Without statistics on `jobs`, PostgreSQL costs the primary key and a status or tenant index alike for a statement
such as the claim (`WHERE id = :id AND status IN (...)`) and may take the other index; each claim, completion and
status read then walks every queued row. Measured on a never-analysed database: 243 million index entries read for a
20,000-job batch (6,100 per job) and 430 instead of 620 jobs/s. Autovacuum analyses a table about a minute after it
has changed by a tenth, when it runs at all; the reconciler closes that gap on a new deployment and stands in where
autovacuum is off. Every ANALYZE replans the prepared statements that read the table."""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

HOT_TABLES = ("jobs",)
# Analyse when this many rows changed since the last ANALYZE, or as many as the table held then (it doubled): a
# handful of times in a table's life, and never before autovacuum where autovacuum runs (it analyses at a tenth).
MIN_CHANGED_ROWS = 500

_STALE = text(
    """
    SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.relname IN :tables AND s.schemaname = current_schema()
      AND s.n_mod_since_analyze >= greatest(:min_changed, c.reltuples)
    """
).bindparams(bindparam("tables", expanding=True))


def refresh_planner_statistics(session: Session) -> list[str]:
    """ANALYZE the hot tables whose statistics are missing or stale by the rule above; returns their names.
    A no-op on SQLite, whose planner prefers a unique index for an equality on all its columns anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    stale = list(session.scalars(_STALE, {"tables": HOT_TABLES, "min_changed": MIN_CHANGED_ROWS}))
    for table in stale:
        session.execute(text(f'ANALYZE "{table}"'))  # names from HOT_TABLES, not from input
    return stale
