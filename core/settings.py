"""Conveyor's settings: one pydantic-settings class read from `CONVEYOR_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(BaseSettings):
    """Every knob Conveyor has. Passed into factories; never read at import time."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./var"), description="Where the embedded database, broker socket and Flower state live."
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: a SQLite file in DATA_DIR.")
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; default: a private Redis on a unix socket in DATA_DIR."
    )
    api_host: str = Field(default="127.0.0.1", description="Address `conveyor up` binds the API to.")
    api_port: int = Field(default=8000, description="Port of the API.")
    api_workers: int = Field(default=2, ge=1, description="gunicorn worker processes started by `conveyor up`.")
    api_threads: int = Field(
        default=8,
        ge=1,
        description="Threads per gunicorn worker (gunicorn's --threads; `conveyor up` passes it): each API process "
        "keeps this many database connections, one per thread.",
    )
    flower_host: str = Field(default="127.0.0.1", description="Address Flower binds to.")
    flower_port: int = Field(default=5555, description="Port of Flower.")
    flower_basic_auth: str | None = Field(default=None, description="`user:password` for Flower; required outside dev.")
    max_request_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest JSON request body accepted (413 above)."
    )
    max_upload_bytes: int = Field(
        default=10 << 30, ge=1024, description="Largest dataset upload accepted (413 above); spooled to DATA_DIR."
    )
    queues: Annotated[list[str], NoDecode] = Field(
        default=["default", "webhooks"], description="Queues the worker consumes (comma-separated)."
    )
    worker_concurrency: int = Field(default=2, ge=1, description="Worker processes per `conveyor up` worker.")
    worker_prefetch_multiplier: int = Field(default=1, ge=1, description="Messages reserved per worker process.")
    jobs_per_message: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Jobs submitted together (one `POST /v1/jobs:batch`, or concurrent `POST /v1/jobs` sharing a "
        "commit) of the same type, queue and priority woken by one broker message and run one after another by one "
        "worker process; 1 sends a message per job.",
    )
    celery_lean: bool = Field(
        default=True,
        description="Publish Celery's own message on the pooled producer and keep one Redis client per broker "
        "channel (ADR 0008), which reach into Celery's and kombu's internals; false uses Celery's `send_task` and "
        "kombu's own transports, for a Celery or kombu outside the versions pyproject.toml pins.",
    )
    workflow_map_limit: int = Field(
        default=10_000, ge=1, le=100_000, description="Most jobs one mapped workflow step may fan out to."
    )
    lease_seconds: float = Field(default=30.0, gt=0, description="A running job's lease; renewed by a heartbeat.")
    reconcile_interval: float = Field(default=2.0, gt=0, description="Seconds between reconciler ticks (beat).")
    backlog_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between the reconciler's reads of the whole backlog: the search for messages the broker "
        "lost, the quotas' counts, the backlog gauges and the planner's statistics. Its other work reads only what is "
        "due, so a tick stays short behind a million queued jobs.",
    )
    schedule_tick: float = Field(
        default=1.0, gt=0, description="Seconds between beat's checks for due schedule slots (a slot fires this late)."
    )
    schedules_file: Path | None = Field(
        default=None, description="A YAML or TOML file of schedules that `conveyor up` syncs into the database."
    )
    republish_after: float = Field(
        default=60.0, gt=0, description="A `queued` row unclaimed for this long is published again."
    )
    retry_backoff_max: float = Field(default=600.0, gt=0, description="Upper bound of one retry delay, in seconds.")
    publish_timeout: float = Field(default=2.0, gt=0, description="Seconds a publish may block before giving up.")
    visibility_timeout: int = Field(
        default=7200, gt=0, description="Redis visibility timeout; keep it above the longest job's time limit."
    )
    retention_succeeded_days: float = Field(
        default=7, ge=0, description="Days a succeeded job (its events and result) is kept; 0 keeps it forever."
    )
    retention_cancelled_days: float = Field(default=7, ge=0, description="Days a cancelled job is kept; 0: forever.")
    retention_failed_days: float = Field(default=30, ge=0, description="Days a failed job is kept; 0: forever.")
    retention_exports_days: float = Field(
        default=7, ge=0, description="Days a dataset export's file is kept (then 404); 0: forever."
    )
    prune_interval: float = Field(default=30.0, gt=0, description="Seconds between the retention pruner's runs.")
    prune_batch: int = Field(
        default=1000, ge=1, le=100_000, description="Jobs the pruner deletes per transaction (short locks)."
    )
    prune_budget_seconds: float = Field(
        default=2.0, gt=0, description="Seconds one pruner run may take; what is left waits for the next run."
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        description="`conveyor up`'s Ctrl-C: seconds running jobs have to finish before their workers are killed (the "
        "jobs then run again at the next start).",
    )
    log_level: str = Field(default="INFO", description="Log level of every process.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="`json`: one JSON object per line (for a log collector); `console`: readable lines; `auto`: "
        "console when the output is a terminal, else json. Either way every line of a request or a job carries its "
        "request_id (and job_id, type, attempt, queue, worker).",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry traces from the API's requests into the workers' jobs (`pip install "
        "'conveyor[tracing]'`); exported as OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT say.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="A Celery worker serves Prometheus metrics on this port (its pool children's too, through "
        "PROMETHEUS_MULTIPROC_DIR); 0: off. The API serves GET /metrics itself (`metrics` scope).",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address a worker's metrics port binds to.")
    auth: Literal["on", "off"] = Field(
        default="on",
        description="`off` lets every request act as an admin of tenant `default` without a key: only with the API "
        "bound to loopback, and said loudly by `conveyor up` and /readyz.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="The server secret that API keys are hashed with; every API process must share it. Default: "
        "DATA_DIR/secret.key, made on first use. Changing it invalidates every key.",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long an API process reuses a key's row before reading it again: a key revoked through "
        "another process stops working within this time (at once in the process that revoked it).",
    )
    rate_limit: str = Field(
        default="100000/minute",
        description="Requests per API key across all /v1 routes, in the `limits` notation (`100/minute`, `;` between "
        "limits: `10 per second;1000/hour`); empty turns rate limiting off.",
    )
    rate_limit_storage_url: str | None = Field(
        default=None,
        description="Where the rate limits count (a `limits` storage URL, e.g. redis://host:6379/2); default: the "
        "broker's Redis.",
    )
    read_token_seconds: int = Field(
        default=900,
        ge=10,
        le=86400,
        description="Lifetime of a job's read token (POST /v1/jobs/{id}/read-token), used as ?access_token= by "
        "browsers following one job.",
    )
    quota_active_jobs: int = Field(
        default=1_000_000,
        ge=0,
        description="Unfinished jobs one tenant may have (429 past it); 0 for no limit.",
    )
    quota_schedules: int = Field(default=10_000, ge=0, description="Schedules one tenant may have; 0 for no limit.")
    quota_dataset_bytes: int = Field(
        default=1 << 40,
        ge=0,
        description="Bytes of dataset files (uploads and exports) one tenant may keep (413 for an upload past it); "
        "0 for no limit.",
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Hosts and networks (comma-separated, e.g. 10.0.5.0/24,hooks.internal) that webhooks and job "
        "callbacks may reach although they are not public addresses; none by default.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Seconds a webhook receiver has to answer one delivery attempt."
    )
    ingest_url_allow: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Hosts and networks (comma-separated) a dataset fetched from a URL (POST /v1/datasets:fetch) may "
        "come from although they are not public addresses; none by default.",
    )
    ingest_url_timeout_seconds: float = Field(
        default=600, gt=0, le=86_400, description="Seconds a dataset's download from a URL may take in all."
    )
    console_session_hours: float = Field(
        default=12, gt=0, le=720, description="How long a console sign-in lasts (a revoked key ends it at once)."
    )
    console_cookie_secure: bool = Field(
        default=True,
        description="Send the console's session cookie over HTTPS only. Browsers count http://127.0.0.1 and "
        "localhost as secure, so `make up` works with it; turn it off only for plain HTTP on another host.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Browser origins allowed to call the API (comma-separated, e.g. https://app.example.com); "
        "none by default.",
    )

    @field_validator("queues", "cors_origins", "webhook_allow", "ingest_url_allow", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if self.auth == "off" and self.api_host not in LOOPBACK:
            raise ValueError(
                f"CONVEYOR_AUTH=off serves every request as an admin without a key, so the API must bind to loopback "
                f"(127.0.0.1, ::1 or localhost), not {self.api_host!r}"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'conveyor.db'}"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def broker_socket(self) -> Path:
        return self.data_dir.resolve() / "redis.sock"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"redis+socket://{self.broker_socket}"


def redacted(url: str) -> str:
    """A URL fit to print: its password (redis://:secret@host, postgresql://user:secret@host) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
