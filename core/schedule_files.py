"""Schedules kept in version control: a YAML or TOML file synced into the database (`conveyor schedule sync`).

The file owns the schedules it declares (source `file`): sync creates them, makes changed ones match the file, and
deletes the file-owned ones the file no longer lists. Schedules made over the API are never touched.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from core.errors import ConveyorError
from core.registry import Registry
from core.schedules import (
    ScheduleDefinition,
    ScheduleInvalid,
    create_schedule,
    definition_of,
    delete_schedule,
    list_schedules,
    parse_definition,
    update_schedule,
)
from core.types import utcnow

FILE_SOURCE = "file"


class ScheduleFileError(ConveyorError):
    slug, status, title = "schedule-file-invalid", 422, "Invalid schedule file"


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verbs = ("created", "updated", "deleted", "unchanged")
        return ", ".join(f"{len(getattr(self, verb))} {verb}" for verb in verbs)


def load_schedule_file(path: Path) -> list[ScheduleDefinition]:
    """`schedules:` (YAML) or `[[schedules]]` (TOML): a list of definitions as for POST /v1/schedules."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScheduleFileError(f"Cannot read {path}: {exc}") from None
    entries = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ScheduleFileError(f"{path} must hold a list of tables under `schedules` (YAML `schedules:`, TOML "
                                "`[[schedules]]`), each like the body of POST /v1/schedules.")  # fmt: skip
    definitions = []
    for index, entry in enumerate(entries):
        try:
            definitions.append(parse_definition(entry))
        except ScheduleInvalid as exc:
            where = f"schedules[{index}]" + (f" ({entry['name']})" if isinstance(entry.get("name"), str) else "")
            raise ScheduleFileError(f"{path}: {where} is invalid.", errors=exc.errors) from None
    names = [d.name for d in definitions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScheduleFileError(f"{path} declares {', '.join(duplicates)} more than once; names are unique.")
    return definitions


def sync_schedules(
    session: Session,
    definitions: list[ScheduleDefinition],
    *,
    registry: Registry,
    known_queues: list[str],
    prune: bool = True,
    now: datetime | None = None,
) -> SyncReport:
    """Make the file-owned schedules match `definitions` (in the caller's transaction: all or nothing)."""
    now = now or utcnow()
    report = SyncReport()
    existing = {s.name: s for s in list_schedules(session)}
    for definition in definitions:
        schedule = existing.get(definition.name)
        if schedule is None:
            create_schedule(session, definition, registry=registry, known_queues=known_queues, source=FILE_SOURCE,
                            now=now)  # fmt: skip
            report.created.append(definition.name)
        elif schedule.source != FILE_SOURCE:
            raise ScheduleFileError(
                f"A schedule named {definition.name!r} was made over the API; the file cannot take it over. "
                "Rename it in the file, or delete the API one first."
            )
        elif definition_of(schedule) == definition:
            report.unchanged.append(definition.name)
        else:
            update_schedule(session, schedule.id, definition.model_dump(), registry=registry,
                            known_queues=known_queues, now=now)  # fmt: skip
            report.updated.append(definition.name)
    if prune:
        declared = {d.name for d in definitions}
        for name, schedule in sorted(existing.items()):
            if schedule.source == FILE_SOURCE and name not in declared:
                delete_schedule(session, schedule.id)
                report.deleted.append(name)
    return report
