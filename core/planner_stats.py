"""Statistics for the planner on the ledger's hot table, where nothing else has provided them (yet).

PostgreSQL: without statistics on `jobs`, PostgreSQL costs the primary key and a status or tenant index alike for a
statement such as the claim (`WHERE id = :id AND status IN (...)`) and may take the other index; each claim,
completion and status read then walks every queued row. Measured on a never-analysed database: 243 million index
entries read for a 20,000-job batch (6,100 per job) and 430 instead of 620 jobs/s. Autovacuum analyses a table about a
minute after it has changed by a tenth, when it runs at all; the reconciler closes that gap on a new deployment and
stands in where autovacuum is off. Every ANALYZE replans the prepared statements that read the table.

SQLite never analyses by itself. Without statistics it takes an index for the number of its columns a query
constrains, not for the rows behind them: a queue's drain (`queue = ? AND status IN (...) AND tenant_id = ? AND
created_at <= ?`) read the tenant's whole history through (tenant_id, created_at) instead of the waiting jobs' partial
index. A sampled ANALYZE (a thousand rows per index, milliseconds at any size) tells it that one tenant is every row.
"""

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
    """ANALYZE the hot tables whose statistics are missing or stale by the rules above; returns their names."""
    if session.get_bind().dialect.name == "sqlite":
        return _refresh_sqlite(session)
    stale = list(session.scalars(_STALE, {"tables": HOT_TABLES, "min_changed": MIN_CHANGED_ROWS}))
    for table in stale:
        session.execute(text(f'ANALYZE "{table}"'))  # names from HOT_TABLES, not from input
    return stale


SQLITE_SAMPLE = 1000  # PRAGMA analysis_limit: rows read per index
# The rows each table spanned when this process last analysed it, by database: SQLite keeps no count of changes, so a
# process analyses a table once it has MIN_CHANGED_ROWS, and again each time it has doubled (or halved) since. A new
# process analyses once more on its first tick: a sample costs milliseconds.
_analysed: dict[tuple[str, str], int] = {}


def _refresh_sqlite(session: Session) -> list[str]:
    database = str(session.get_bind().engine.url)
    stale = []
    for table in HOT_TABLES:
        # the rowid range: two index lookups, where count(*) reads the table; holes (deleted rows) make it high
        rows = f'SELECT coalesce(max(rowid) - min(rowid) + 1, 0) FROM "{table}"'  # noqa: S608 (HOT_TABLES' names)
        span = session.scalar(text(rows)) or 0
        last = _analysed.get((database, table))
        if span >= MIN_CHANGED_ROWS and (last is None or not last / 2 <= span <= last * 2):
            session.execute(text(f"PRAGMA analysis_limit = {SQLITE_SAMPLE}"))
            session.execute(text(f'ANALYZE "{table}"'))
            _analysed[(database, table)] = span
            stale.append(table)
    return stale
