"""A dataset's schema as later files change it: what an append (or a replace) may add, fill and widen.

- A column the file has and the dataset does not is added, nullable, with the type the file's sample shows, unless
  the ingest says `schema: strict`.
- A column the dataset has and the file does not is filled with nulls if it is nullable; if not, the file is refused.
- In a schema that was inferred, a column whose values fit its type (the same, or narrower: integers into a float
  column, dates into a timestamp one, anything into text) is loaded as it is; one whose values need the lossless
  wider type (decimals in an integer column, times in a date one) widens it; any other change of type is refused
  with both types named, and the dataset's rows stay as they are. A declared schema is a contract: it never widens,
  and a value that does not fit its column is a reject with its line, as in the first file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.datasets.formats import FileOptions, Format, check_file
from core.datasets.inference import infer_columns, sampled_types
from core.datasets.schema import ColumnSpec, ColumnType, sql_name
from core.datasets.typing import WIDER
from core.errors import ConveyorError

SchemaMode = Literal["evolve", "strict"]


class SchemaConflict(ConveyorError):
    slug, status, title = "schema-conflict", 422, "The file does not fit the dataset's schema"


@dataclass
class Evolution:
    columns: list[ColumnSpec]  # the dataset's columns after this ingest
    changes: list[dict[str, object]] = field(default_factory=list)  # {column, added | from, to}


def fits(incoming: ColumnType | None, existing: ColumnType) -> bool:
    """Whether every value of the incoming type is a value of the existing one (None: the file had no value)."""
    return incoming is None or incoming == existing or existing == "string" or WIDER.get(incoming) == existing


def evolve(
    existing: list[ColumnSpec], incoming: list[tuple[str, ColumnType | None]], *, inferred: bool, mode: SchemaMode
) -> Evolution:
    """The dataset's columns with the file's (`incoming`: each name and the type its sample shows) taken in, or
    SchemaConflict naming every column that cannot be. `inferred`: the dataset's schema was inferred (not declared)."""
    types = dict(incoming)
    columns: list[ColumnSpec] = []
    changes: list[dict[str, object]] = []
    problems: list[tuple[str, str]] = []
    for column in existing:
        if column.name not in types:
            if not column.nullable:
                problems.append((column.name, f"{column.name!r} is not in the file, and the dataset's column may not "
                                              "be empty"))  # fmt: skip
            columns.append(column)
            continue
        found = types[column.name]
        if not inferred or fits(found, column.type):
            columns.append(column)
        elif found == WIDER.get(column.type):
            columns.append(column.model_copy(update={"type": found}))
            changes.append({"column": column.name, "from": column.type, "to": found})
        else:
            problems.append((column.name, f"{column.name!r} is {column.type} in the dataset but {found} in the file"))
    added = [(name, type) for name, type in incoming if name not in {c.name for c in existing}]
    if added and mode == "strict":
        problems += [(name, f"{name!r} is not a column of the dataset (schema: strict)") for name, _type in added]
    elif added:
        taken = {c.column or c.name for c in existing}
        for name, type in added:
            sql = sql_name(name, taken)
            taken.add(sql)
            columns.append(ColumnSpec(name=name, type=type or "string", nullable=True, column=sql))
            changes.append({"column": name, "added": type or "string"})
    if problems:
        raise SchemaConflict(
            "The file does not fit the dataset's schema: " + "; ".join(text for _name, text in problems) + ". Load it "
            "into a new dataset, or fix the file (the rows already loaded are unchanged).",
            errors=[{"field": f"columns.{name}", "message": text} for name, text in problems],
        )
    return Evolution(columns, changes)


def plan_columns(
    stored: list[ColumnSpec] | None, *, has_data: bool, inferred: bool, path: Path, format: Format,
    options: FileOptions, schema_mode: SchemaMode,
) -> list[ColumnSpec]:  # fmt: skip
    """The columns a file is loaded with, or the 422 that refuses it (the API asks before it accepts an upload):
    a dataset with data evolves its schema by the file; a declared schema's first file must have every declared
    column; a dataset without a schema takes the file's."""
    if stored is not None and has_data:
        return evolve(stored, sampled_types(path, format, options), inferred=inferred, mode=schema_mode).columns
    if stored is not None:
        check_file(path, format, options, stored)
        return stored
    return infer_columns(path, format, options)
