"""docker-compose.yml and the Dockerfile, checked without Docker: schema, references, queues, settings."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.processes import process_commands
from core.queue_names import QueueNames
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
CONVEYOR_SERVICES = {"api", "worker", "maintenance", "beat", "flower"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_depends_on_names_services(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    for name, service in compose["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_every_role_runs(compose: dict[str, Any]) -> None:
    assert CONVEYOR_SERVICES <= set(compose["services"])
    commands = {name: " ".join(compose["services"][name]["command"]) for name in CONVEYOR_SERVICES}
    assert "api:create_app()" in commands["api"]
    assert "worker.app beat" in commands["beat"] and "worker.app flower" in commands["flower"]


def test_compose_shares_a_server_secret_and_guards_redis_with_a_password(compose: dict[str, Any]) -> None:
    """Every Conveyor container hashes keys with the same secret, which compose refuses to start without; Redis
    requires a password, and the broker URL sends it."""
    for name in (*CONVEYOR_SERVICES, "migrate"):
        env = compose["services"][name]["environment"]
        assert env["CONVEYOR_SECRET_KEY"].startswith("${CONVEYOR_SECRET_KEY:?"), name
        assert env["CONVEYOR_BROKER_URL"].startswith("${CONVEYOR_BROKER_URL:-redis://:${REDIS_PASSWORD:?"), name
    redis = compose["services"]["redis"]["command"]
    assert redis[redis.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")


def test_gunicorn_logs_through_conveyors_handler_and_leaves_requests_to_the_app(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """gunicorn's access log (which could carry a ?access_token= query) stays off in compose and `conveyor up`: the
    app logs each request itself, without its query (tests/api/test_request_log.py), in CONVEYOR_LOG_FORMAT."""
    up = shlex.split(process_commands(Settings(data_dir=tmp_path))["api"])
    for command in (compose["services"]["api"]["command"], up):
        assert command[command.index("--logger-class") + 1] == "api.gunicorn_logging.Logger"
        assert "--access-logfile" not in command
    assert compose["x-conveyor"]["environment"]["CONVEYOR_LOG_FORMAT"] == "json"


def test_the_api_keeps_a_database_connection_per_gunicorn_thread(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    threads = api["command"][api["command"].index("--threads") + 1]
    assert api["environment"]["CONVEYOR_API_THREADS"] == threads
    assert api["environment"]["CONVEYOR_DATABASE_URL"].startswith("postgresql+psycopg://")  # the shared env kept
    up = shlex.split(process_commands(Settings(api_threads=3))["api"])
    assert up[up.index("--threads") + 1] == "3"


def test_gunicorns_heartbeat_file_lives_in_memory(compose: dict[str, Any]) -> None:
    """The heartbeat gunicorn's workers touch between requests must not wait for a disk (gunicorn's FAQ)."""
    command = compose["services"]["api"]["command"]
    assert command[command.index("--worker-tmp-dir") + 1] == "/dev/shm"
    up = shlex.split(process_commands(Settings())["api"])
    assert up[up.index("--worker-tmp-dir") + 1] == "/dev/shm"  # this machine has one (Linux)


def test_worker_queues_cover_the_code(compose: dict[str, Any]) -> None:
    consumed: set[str] = set()
    for service in compose["services"].values():
        command = service.get("command") or []
        if "worker" in command and "-Q" in command:
            consumed |= set(command[command.index("-Q") + 1].split(","))
    assert consumed == set(QueueNames.all())
    settings_queues = compose["x-conveyor"]["environment"]["CONVEYOR_QUEUES"].split(",")
    assert set(settings_queues) <= consumed


def test_env_names_are_settings(compose: dict[str, Any]) -> None:
    fields = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    for service in compose["services"].values():
        for name in service.get("environment") or {}:
            if name.startswith("CONVEYOR_"):
                assert name in fields, f"{name} is not a setting"
    assert compose["services"]["redis"]["command"][1:3] == ["--appendonly", "yes"]


def test_the_readme_settings_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [name for name in Settings.model_fields if f"| `CONVEYOR_{name.upper()}` |" not in readme] == []


def test_flower_requires_auth_and_postgres_is_used(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    env = compose["x-conveyor"]["environment"]
    assert env["CONVEYOR_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["CONVEYOR_BROKER_URL"].startswith("${CONVEYOR_BROKER_URL:-redis://")  # Redis unless set


def test_the_rabbitmq_profile_runs_a_broker_fit_for_conveyor(compose: dict[str, Any]) -> None:
    """Opt-in (a profile), with the management API Flower reads queue lengths from, a consumer_timeout above the
    longest job (CONVEYOR_VISIBILITY_TIMEOUT's default), a durable volume, a healthcheck Conveyor's services wait for
    when it runs; Redis stays for the rate limits."""
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"] and rabbitmq["image"].endswith("-management")
    timeout_ms = int(rabbitmq["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].split("consumer_timeout ")[1])
    assert timeout_ms >= Settings().visibility_timeout * 1000
    assert rabbitmq["volumes"] == ["rabbitmq-data:/var/lib/rabbitmq"] and "rabbitmq-data" in compose["volumes"]
    assert compose["x-conveyor"]["depends_on"]["rabbitmq"] == {"condition": "service_healthy", "required": False}
    assert "FLOWER_BROKER_API" in compose["services"]["flower"]["environment"]
    assert compose["x-conveyor"]["environment"]["CONVEYOR_RATE_LIMIT_STORAGE_URL"].startswith("redis://")


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("core", "api", "worker", "tasks", "cli"):
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package


def test_conveyor_up_runs_the_same_roles(tmp_path: Path) -> None:
    commands = process_commands(Settings(data_dir=tmp_path))
    assert {"redis", "api", "worker", "maintenance", "beat", "flower"} == set(commands)
    assert f"-Q {QueueNames.DEFAULT}" in commands["worker"]
    assert f"-Q {QueueNames.MAINTENANCE}" in commands["maintenance"]
    assert "--address=127.0.0.1" in commands["flower"] and "--persistent=True" in commands["flower"]
    external = process_commands(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert "redis" not in external
