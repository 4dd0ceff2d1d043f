"""Schedule files (YAML and TOML) synced into a real database, directly and through `conveyor schedule sync`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cli.main import main
from core.errors import PayloadInvalid
from core.models import Schedule
from core.registry import Registry
from core.schedule_files import ScheduleFileError, load_schedule_file, sync_schedules
from core.schedules import ScheduleDefinition, create_schedule

QUEUES = ["default"]
YAML = """
schedules:
  - name: nightly
    type: echo
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    payload: {message: "day {{ slot_previous_date }}"}
  - name: heartbeat
    type: echo
    interval_seconds: 30
    misfire: none
    payload: {message: ping}
"""
TOML = """
[[schedules]]
name = "nightly"
type = "echo"
cron = "30 3 * * *"
timezone = "Europe/Berlin"
payload = { message = "day {{ slot_previous_date }}" }
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def names(session: Session) -> dict[str, Schedule]:
    return {s.name: s for s in session.scalars(select(Schedule))}


def sync(session: Session, registry: Registry, path: Path) -> list[list[str]]:
    report = sync_schedules(session, load_schedule_file(path), registry=registry, known_queues=QUEUES)
    session.commit()
    return [report.created, report.updated, report.unchanged, report.deleted]


def test_sync_creates_updates_keeps_and_prunes(session: Session, registry: Registry, tmp_path: Path) -> None:
    assert sync(session, registry, write(tmp_path, "s.yaml", YAML)) == [["nightly", "heartbeat"], [], [], []]
    assert sync(session, registry, write(tmp_path, "s.yaml", YAML)) == [[], [], ["nightly", "heartbeat"], []]
    assert sync(session, registry, write(tmp_path, "s.toml", TOML)) == [[], ["nightly"], [], ["heartbeat"]]
    stored = names(session)
    assert list(stored) == ["nightly"]
    assert stored["nightly"].cron == "30 3 * * *" and stored["nightly"].source == "file"


def test_sync_never_touches_api_schedules(session: Session, registry: Registry, tmp_path: Path) -> None:
    mine = ScheduleDefinition(name="mine", type="echo", payload={"message": "x"}, interval_seconds=60)
    create_schedule(session, mine, registry=registry, known_queues=QUEUES)
    session.commit()
    sync(session, registry, write(tmp_path, "s.yaml", YAML))
    assert set(names(session)) == {"mine", "nightly", "heartbeat"}
    taken = YAML.replace("name: heartbeat", "name: mine")
    with pytest.raises(ScheduleFileError, match="made over the API"):
        sync(session, registry, write(tmp_path, "s.yaml", taken))
    session.rollback()
    assert names(session)["mine"].source == "api"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schedules: nope", "list of tables"),
        ("- name: x", "list of tables"),
        ("schedules: [{name: x, type: echo, cron: '99 * * * *'}]", r"schedules\[0\] \(x\) is invalid"),
        ("schedules: [{name: x, type: echo, interval_seconds: 5}, {name: x, type: echo, interval_seconds: 6}]",
         "more than once"),
        ("schedules: [{name: x, type: echo", "Cannot read"),
    ],
)  # fmt: skip
def test_invalid_files_are_refused_whole(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScheduleFileError, match=message):
        load_schedule_file(write(tmp_path, "bad.yaml", text))


def test_a_payload_the_type_rejects_leaves_the_database_unchanged(
    session: Session, registry: Registry, tmp_path: Path
) -> None:
    bad = YAML.replace("payload: {message: ping}", "payload: {message: 5}")
    with pytest.raises(PayloadInvalid, match="schema"):
        sync(session, registry, write(tmp_path, "s.yaml", bad))
    session.rollback()
    assert names(session) == {}


def test_cli_sync_with_dry_run(clean_db: Engine, database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "schedules.yaml", YAML)
    env = {"CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_DATA_DIR": str(tmp_path)}
    dry = CliRunner().invoke(main, ["schedule", "sync", str(path), "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would be created: nightly, heartbeat" in dry.output
    with Session(clean_db) as session:
        assert names(session) == {}
    real = CliRunner().invoke(main, ["schedule", "sync", str(path)], env=env)
    assert real.exit_code == 0 and "created: nightly, heartbeat" in real.output
    with Session(clean_db) as session:
        assert set(names(session)) == {"nightly", "heartbeat"}
    broken = CliRunner().invoke(main, ["schedule", "sync", str(write(tmp_path, "b.yaml", "schedules: 1"))], env=env)
    assert broken.exit_code == 1 and "list of tables" in broken.output
