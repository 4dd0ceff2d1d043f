"""The Flask app factory: `create_app(settings)` wires settings, database, registry, publisher and blueprints."""

from __future__ import annotations

from importlib.metadata import version

from apiflask import APIFlask
from flask import request

from api import (
    datasets,
    failures,
    files,
    health,
    job_batches,
    job_stream,
    job_types,
    jobs,
    keys,
    metrics,
    queues,
    schedules,
    usage,
    webhooks,
    workflows,
)
from api.auth import SECURITY_SCHEMES, Authenticator, authenticate
from api.console import install_console
from api.extension import Conveyor, close_db
from api.headers import install_headers
from api.jsonio import JSONRequest, StrictJSONProvider
from api.metrics import install_request_metrics
from api.openapi import install_openapi
from api.problems import PROBLEM_SCHEMA, problem, register_problem_handlers
from api.rate_limits import install_rate_limits
from api.request_log import install_request_log
from core import tracing
from core.db import make_engine, make_sessionmaker, reading
from core.group_commit import GroupCommit
from core.publish import process_sessions
from core.queue import CeleryPublisher, Publisher, broker_reachable, make_celery
from core.quotas import UsageCache
from core.registry import Registry, load_registry
from core.server_secret import server_secret
from core.settings import Settings

BODY_METHODS = {"POST", "PUT", "PATCH"}
SWAGGER_UI = "/static/vendor/swagger-ui"
UPLOAD_ENDPOINTS = {"datasets.create", "datasets.ingest"}


def create_app(
    settings: Settings | None = None, *, publisher: Publisher | None = None, registry: Registry | None = None
) -> APIFlask:
    settings = settings or Settings()
    app = APIFlask(
        __name__, title="Conveyor", version=version("conveyor"), docs_path="/docs", spec_path="/openapi.json"
    )
    app.json_provider_class = StrictJSONProvider
    app.request_class = JSONRequest
    app.json = StrictJSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        OPENAPI_VERSION="3.1.0",
        VALIDATION_ERROR_STATUS_CODE=422,
        VALIDATION_ERROR_DESCRIPTION="Request validation failed",
        HTTP_ERROR_SCHEMA=PROBLEM_SCHEMA,
        VALIDATION_ERROR_SCHEMA=PROBLEM_SCHEMA,
        SYNC_LOCAL_SPEC=False,
        # /docs from the Swagger UI files vendored in api/static/vendor (their versions and licences: its README),
        # never from a CDN: the machine may have no internet. No validator badge (it calls validator.swagger.io).
        SWAGGER_UI_CSS=f"{SWAGGER_UI}/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
        SWAGGER_UI_CONFIG={"validatorUrl": None},
        DOCS_FAVICON=f"{SWAGGER_UI}/favicon-32x32.png",
        INFO={"description": "Submit background jobs, poll their status, read their results and audit trail."},
        SECURITY_SCHEMES=SECURITY_SCHEMES,
    )

    # A connection per thread: with fewer (SQLAlchemy's default pool keeps 5), concurrent requests beyond them opened
    # and closed overflow connections, a PostgreSQL backend started for each (262 in 10 s of GETs at 8 connections,
    # p99 63 ms; with a connection per thread, 7 and 38 ms).
    engine = make_engine(settings.resolved_database_url, pool_size=settings.api_threads)
    celery = make_celery(settings, name="conveyor-api", producer=True) if publisher is None else None
    publisher = publisher or CeleryPublisher(celery, lean=settings.celery_lean)
    registry = registry or load_registry()

    sessions = process_sessions(engine, settings, registry, publisher)
    read_sessions = make_sessionmaker(reading(engine))
    app.extensions["conveyor"] = Conveyor(
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=read_sessions,
        registry=registry,
        publisher=publisher,
        broker_check=(lambda: broker_reachable(celery, settings.publish_timeout)) if celery else (lambda: True),
        submit_groups=GroupCommit(jobs.submit_group),
        authenticator=Authenticator(server_secret(settings), read_sessions, sessions, settings.auth_cache_seconds),
        usage_cache=UsageCache(),
    )
    app.teardown_appcontext(close_db)
    register_problem_handlers(app)
    install_headers(app, settings)
    install_request_log(app)  # first of all: every line logged while answering carries the request id
    install_request_metrics(app)  # before auth: every answer is counted, a 401 too
    app.before_request(authenticate)  # first: a caller without a key learns nothing else about the request
    install_rate_limits(app, settings)

    @app.before_request
    def require_json_body():  # type: ignore[no-untyped-def]
        has_body = request.content_length or request.headers.get("Transfer-Encoding")
        if request.endpoint in UPLOAD_ENDPOINTS or not request.path.startswith("/v1/"):
            return None  # files, checked by api/uploads.py; the console's HTML forms
        if request.method in BODY_METHODS and has_body and not request.is_json:
            return problem(
                415, detail=f"Send JSON with `Content-Type: application/json` (got {request.mimetype or 'none'})."
            )
        return None

    blueprints = (
        jobs.bp,
        job_batches.bp,
        job_stream.bp,
        job_types.bp,
        queues.bp,
        schedules.bp,
        datasets.bp,
        files.bp,
        keys.bp,
        usage.bp,
        webhooks.bp,
        workflows.bp,
        failures.bp,
        health.bp,
        metrics.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    install_console(app, settings, app.extensions["conveyor"].authenticator.server_secret)
    install_openapi(app)
    if settings.tracing:
        instrument(app)
    return app


def instrument(app: APIFlask) -> None:
    """A span per request (continuing a caller's `traceparent`), whose context the jobs' messages carry on."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    tracing.configure("conveyor-api")
    FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
