"""`conveyor doctor` against real components: a database without migrations, a broker that does not answer and a
beat that never ticked are each named with what to do, and the exit code is 1; a recent tick reads as ticking."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from core.db import make_sessionmaker
from core.doctor import check_beat, check_database
from core.models import Heartbeat
from core.settings import Settings
from core.types import utcnow


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_doctor_names_a_missing_migration_a_stopped_broker_and_a_dead_beat(tmp_path: Path) -> None:
    env = {"CONVEYOR_DATA_DIR": str(tmp_path), "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
           "CONVEYOR_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0", "CONVEYOR_PUBLISH_TIMEOUT": "1",
           "CONVEYOR_FLOWER_PORT": str(closed_port())}  # fmt: skip
    result = CliRunner().invoke(main, ["doctor"], env=env)
    assert result.exit_code == 1, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith(("ok ", "FAIL "))}
    assert lines["database"].startswith("ok ")
    assert lines["migrations"].startswith("FAIL") and "no revision" in lines["migrations"]
    assert lines["broker"].startswith("FAIL") and "cannot connect" in lines["broker"]
    assert lines["beat"].startswith("FAIL") and lines["flower"].startswith("FAIL")
    assert "conveyor db upgrade" in result.output and "CONVEYOR_BROKER_URL" in result.output
    assert "failing: migrations, broker, beat, flower" in result.output


def test_bad_settings_are_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["doctor"], env={"CONVEYOR_DATA_DIR": str(tmp_path),
                                                       "CONVEYOR_LEASE_SECONDS": "-1"})  # fmt: skip
    assert result.exit_code == 1 and "FAIL settings" in result.output and "CONVEYOR_LEASE_SECONDS" in result.output


def test_beat_reads_as_ticking_from_a_recent_heartbeat_only(clean_db: Engine, database_url: str) -> None:
    settings = Settings(database_url=database_url)
    assert not check_beat(clean_db, settings).ok  # never ticked
    with make_sessionmaker(clean_db)() as session, session.begin():
        session.add(Heartbeat(name="schedules", host="h", beat_at=utcnow() - timedelta(minutes=5)))
    stale = check_beat(clean_db, settings)
    assert not stale.ok and "ran 300 s ago" in stale.detail and "Start beat" in stale.fix
    with make_sessionmaker(clean_db)() as session, session.begin():
        session.merge(Heartbeat(name="schedules", host="h", beat_at=utcnow()))
    assert check_beat(clean_db, settings).ok
    assert [(c.name, c.ok) for c in check_database(clean_db, settings)] == [
        ("database", True), ("migrations", True), ("clock", True)]  # fmt: skip


def test_on_rabbitmq_the_queues_check_names_each_undeclared_queue() -> None:
    from core.doctor import check_workers
    from core.queue import broker_reachable, make_celery
    from tests.support.backends import services_or_skip

    settings = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//", queues=["doctor-a", "doctor-b"])
    app = make_celery(settings)
    services_or_skip("RabbitMQ", broker_reachable(app, timeout=2))
    with app.connection_for_write() as connection:
        connection.default_channel.queue_declare(queue="doctor-a", durable=True, auto_delete=False)
    try:
        checks = {c.name: c for c in check_workers(app, settings)}
        assert "queues" in checks, checks  # not "cannot ask the workers"
        assert not checks["queues"].ok
        declared, missing = checks["queues"].detail.split("; missing: ")
        assert "doctor-a" in declared and "doctor-b" in missing.split(", ")  # (maintenance: as other runs left it)
        assert not checks["workers:doctor-a"].ok and "no worker" in checks["workers:doctor-a"].detail
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete("doctor-a")
