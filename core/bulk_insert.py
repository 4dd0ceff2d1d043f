"""Inserts of many rows with the least driver work: the submit's hot path (a profile put a third of a POST's time in
the ORM's bulk-insert machinery, and then a sixth in SQLAlchemy Core's statement and parameter handling).

PostgreSQL: one short statement of column arrays, INSERT … SELECT * FROM unnest(…), the same for two rows or a
thousand with one parameter per column: psycopg caches its parsing (a statement of per-row binds, past 50
parameters, was parsed again on every call: an eighth of an API process's CPU under load) and PostgreSQL can
prepare it. A single row (a lone POST's) is a VALUES row of the same parameters instead: psycopg adapts a list by
walking it for its element type, a tenth of an idle POST's time for 31 lists of one. SQLite: the DB-API's
executemany of a plain INSERT. Either way values go through each column type's bind processor, as SQLAlchemy's
own inserts do (UTC checks, JSON adaptation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, Table


@functools.cache
def unnest_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], prefix: str) -> str:
    """`INSERT INTO table (columns) SELECT * FROM unnest(%(<prefix><column>)s::<type>[], …)`."""
    arrays = ", ".join(f"%({prefix}{name})s::{_sql_type(dialect, table, name)}[]" for name in columns)
    return f"{_insert_into(dialect, table, columns)} SELECT * FROM unnest({arrays})"  # noqa: S608 - metadata names


def column_arrays(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]], prefix: str
) -> dict[str, list[Any]]:
    """The rows as one bound list per column, for `unnest_insert`."""
    arrays = {}
    for name in columns:
        process = _bind_processor(dialect, table, name)
        values = [row[name] for row in rows]
        arrays[f"{prefix}{name}"] = values if process is None else [process(v) for v in values]
    return arrays


@functools.cache
def row_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], prefix: str) -> str:
    """`INSERT INTO table (columns) VALUES (%(<prefix><column>)s::<type>, …)`: `unnest_insert` for one row."""
    values = ", ".join(f"%({prefix}{name})s::{_sql_type(dialect, table, name)}" for name in columns)
    return f"{_insert_into(dialect, table, columns)} VALUES ({values})"


def row_params(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]], prefix: str
) -> dict[str, Any]:
    """The one row's values, for `row_insert` (the signature of `column_arrays`, so either pair serves)."""
    (_row,) = rows
    return {name: values[0] for name, values in column_arrays(dialect, table, columns, rows, prefix).items()}


def _sql_type(dialect: Dialect, table: Table, name: str) -> str:
    return str(table.c[name].type.dialect_impl(dialect).compile(dialect=dialect))


def _insert_into(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    quote = dialect.identifier_preparer.quote
    return f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"


@functools.cache
def _bind_processor(dialect: Dialect, table: Table, name: str) -> Any:
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


@functools.cache
def plain_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns) VALUES (?, …)` for the DB-API's executemany (qmark style, SQLite's)."""
    return f"{_insert_into(dialect, table, columns)} VALUES ({', '.join('?' * len(columns))})"


def row_tuples(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The rows as bound tuples in `columns` order, for `plain_insert`."""
    processors = [_bind_processor(dialect, table, name) for name in columns]
    return [
        tuple(
            row[name] if process is None else process(row[name])
            for name, process in zip(columns, processors, strict=True)
        )
        for row in rows
    ]
