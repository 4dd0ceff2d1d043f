"""Optional OpenTelemetry traces (CONVEYOR_TRACING=true, the `tracing` extra): the API's request span continues in
the worker's span of each job, through the W3C `traceparent` header of the job's message.

The exporter is OpenTelemetry's own configuration: OTEL_TRACES_EXPORTER `otlp` (the default: OTLP over HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT, http://localhost:4318 unless set) or `console` (one JSON object per span on stdout);
OTEL_SERVICE_NAME names the process (default conveyor-api / conveyor-worker). Nothing here is imported unless
tracing is on, so a deployment without the extra never loads OpenTelemetry.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_enabled = False


def enabled() -> bool:
    return _enabled


def configure(service_name: str) -> None:
    """The process's tracer provider and exporter. Called in the process that serves (a gunicorn worker, a pool
    child), never before a fork: the exporter's thread would not survive it."""
    global _enabled
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        raise RuntimeError(
            "CONVEYOR_TRACING=true needs OpenTelemetry: pip install 'conveyor[tracing]', or set CONVEYOR_TRACING=false."
        ) from None
    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp") == "console":
        exporter = ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True


def inject(headers: dict[str, Any]) -> None:
    """The current span's context into a message's headers (`traceparent`), which the worker's Celery
    instrumentation continues."""
    if _enabled:
        from opentelemetry.propagate import inject as inject_context

        inject_context(headers)


def current_ids() -> dict[str, str]:
    """The trace and span ids of the current span, for log lines; none outside a span or with tracing off."""
    if not _enabled:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
