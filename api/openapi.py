"""The OpenAPI document as frontends' client generators need it: one component per model, referenced everywhere;
every answer an operation can give, errors as application/problem+json; operation ids that read as method names.

apiflask registers a model's nested models under the parent's name (`JobPage.JobRead` beside `JobRead`), and
generators then drop the models that hold such copies; `finish` folds each copy into its model's one component.
"""

from __future__ import annotations

import re
from typing import Any

from apiflask import APIFlask

# endpoint → operationId: the generated clients' method names (tests/api/test_openapi.py checks every operation has one)
OPERATION_IDS = {
    "health.healthz": "checkLiveness",
    "health.readyz": "checkReadiness",
    "metrics.scrape": "scrapeMetrics",
    "jobs.create": "submitJob",
    "jobs.list_all": "listJobs",
    "jobs.get_one": "getJob",
    "jobs.events": "listJobEvents",
    "jobs.result": "getJobResult",
    "jobs.cancel": "cancelJob",
    "jobs.retry": "retryJob",
    "jobs.read_token": "createJobReadToken",
    "job_stream.stream": "streamJob",
    "job_batches.create_batch": "submitJobBatch",
    "job_types.list_all": "listJobTypes",
    "queues.list_all": "listQueues",
    "queues.pause": "pauseQueue",
    "queues.resume": "resumeQueue",
    "queues.drain": "drainQueue",
    "queues.retry_matching": "retryFailedJobs",
    "failures.list_all": "listFailureGroups",
    "failures.get_one": "getFailureGroup",
    "failures.retry": "retryFailureGroup",
    "failures.cancel": "cancelFailureGroup",
    "schedules.create": "createSchedule",
    "schedules.list_all": "listSchedules",
    "schedules.get_one": "getSchedule",
    "schedules.update": "updateSchedule",
    "schedules.delete": "deleteSchedule",
    "schedules.pause": "pauseSchedule",
    "schedules.resume": "resumeSchedule",
    "schedules.trigger": "triggerSchedule",
    "schedules.runs": "listScheduleRuns",
    "datasets.create": "uploadDataset",
    "datasets.ingest": "ingestDataset",
    "datasets.fetch": "fetchDataset",
    "datasets.list_all": "listDatasets",
    "datasets.get_one": "getDataset",
    "datasets.rows": "listDatasetRows",
    "datasets.rejects": "listDatasetRejects",
    "datasets.delete": "deleteDataset",
    "files.download": "downloadFile",
    "keys.create": "createKey",
    "keys.list_all": "listKeys",
    "keys.get_one": "getKey",
    "keys.revoke": "revokeKey",
    "usage.usage": "getUsage",
    "webhooks.create": "createWebhook",
    "webhooks.list_all": "listWebhooks",
    "webhooks.get_one": "getWebhook",
    "webhooks.delete": "deleteWebhook",
    "webhooks.secret": "getWebhookSecret",
    "webhooks.rotate": "rotateWebhookSecret",
    "webhooks.deliveries": "listWebhookDeliveries",
    "webhooks.redeliver": "redeliverWebhookDelivery",
    "workflows.create": "submitWorkflow",
    "workflows.list_all": "listWorkflows",
    "workflows.get_one": "getWorkflow",
    "workflows.events": "listWorkflowEvents",
    "workflows.stream": "streamWorkflow",
    "workflows.cancel": "cancelWorkflow",
    "workflows.retry": "retryWorkflow",
}

PROBLEM = "Problem"  # the one component of every error body (RFC 9457)
PROBLEM_MEDIA = "application/problem+json"
# What any /v1 operation may answer besides its own outcomes (api/auth.py, api/rate_limits.py, api/problems.py).
EVERY_V1_ANSWER = {
    "401": "No, a malformed, an unknown, a revoked or an expired key",
    "403": "The key lacks the operation's scope",
    "429": "Over the key's rate limit (Retry-After says when to try again)",
    "503": "The database or the broker is unavailable (Retry-After)",
}
BODY_ANSWERS = {"413": "The body is over CONVEYOR_MAX_REQUEST_BYTES", "415": "Not JSON"}
REF = "#/components/schemas/"


class SpecError(RuntimeError):
    """Two different models share a name: a client generator could keep only one of them."""


def install_openapi(app: APIFlask) -> None:
    @app.spec_processor
    def _finish(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
        return finish(spec, endpoints_of(app)) if isinstance(spec, dict) else spec  # a str: already rendered


def endpoints_of(app: APIFlask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) → the Flask endpoint that answers it."""
    found = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            found[(path, method.lower())] = rule.endpoint
    return found


def finish(spec: dict[str, Any], endpoints: dict[tuple[str, str], str]) -> dict[str, Any]:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    renames = _fold_nested_copies(schemas)
    spec = _rewrite_refs(spec, renames)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            endpoint = endpoints[(path, method)]
            operation["operationId"] = OPERATION_IDS.get(endpoint, endpoint.replace(".", "_"))
            _document_answers(path, method, operation)
    return spec


def _fold_nested_copies(schemas: dict[str, Any]) -> dict[str, str]:
    """Fold `Parent.Model` copies into `Model` (and the problem schemas into PROBLEM); returns old → new names."""
    renames = {name: name.rsplit(".", 1)[1] for name in schemas if "." in name}
    renames.update({name: PROBLEM for name in ("HTTPError", "ValidationError") if name in schemas})
    folded: dict[str, Any] = {}
    for name in sorted(schemas):
        target = renames.get(name, name)
        body = _rewrite_refs(schemas[name], renames)
        if target in folded and _comparable(folded[target]) != _comparable(body):
            raise SpecError(f"two different models are named {target!r} ({name} and another): rename one")
        folded.setdefault(target, body)
    schemas.clear()
    schemas.update(folded)
    return renames


def _comparable(schema: Any) -> Any:
    """A schema without the title pydantic derives from where it was nested."""
    return {k: v for k, v in schema.items() if k != "title"} if isinstance(schema, dict) else schema


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF) :] in renames:
            return {**node, "$ref": REF + renames[ref[len(REF) :]]}
        return {key: _rewrite_refs(value, renames) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _document_answers(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    if path.startswith("/v1/"):
        any_key = all(not scopes for requirement in operation.get("security", []) for scopes in requirement.values())
        for status, description in EVERY_V1_ANSWER.items():
            if not (status == "403" and any_key):  # an operation any key may call refuses none for its scope
                responses.setdefault(status, {"description": description})
        if method in ("post", "patch", "put") and "requestBody" in operation:
            for status, description in BODY_ANSWERS.items():
                responses.setdefault(status, {"description": description})
    if "304" in responses:
        responses["304"] = {"description": responses["304"].get("description", "Not modified")}
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            response["content"] = {PROBLEM_MEDIA: {"schema": {"$ref": REF + PROBLEM}}}
