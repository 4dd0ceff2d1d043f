"""Pydantic models of the HTTP API: requests (`<Thing>Create`, queries) and responses (`<Thing>Read`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from core.datasets.formats import FileOptions, Format
from core.datasets.schema import ColumnSpec
from core.models import Job, JobEvent, JobResult, Schedule
from core.queue_ops import RETRY_LIMIT_MAX
from core.schedules import ScheduleDefinition, upcoming_slots
from core.status import JobStatus
from core.workflows.definition import OnCompleteDefinition

QUEUE_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
MAX_DELAY_SECONDS = 366 * 24 * 3600


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """Refused here (422) what reached the database layer as a 500: NUL in text (PostgreSQL cannot hold it), and
        a time that leaves Python's years 1-9999 once converted to UTC (0001-01-01T00:00:00+01:00)."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        if isinstance(value, datetime) and value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None
        return value


class JobCreate(Strict):
    type: str = Field(min_length=1, max_length=100, description="A job type name from GET /v1/job-types.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Validated against the job type's schema.")
    priority: int | None = Field(default=None, ge=0, le=9, description="0-9, higher runs first; default per type.")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN, description="Override the job type's queue.")
    run_at: AwareDatetime | None = Field(default=None, description="Do not start before this time (with offset).")
    delay_seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS, description="Or: start after this.")
    max_attempts: int | None = Field(default=None, ge=1, le=100, description="Attempts before `failed`.")
    unique_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="At most one unfinished job per key: while one is scheduled, queued, running or retrying, "
        "submitting another with the same key returns that job (200) instead of creating one.",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="POSTed when the job succeeds, fails or is cancelled: a Standard Webhooks delivery signed with "
        "the secret of the tenant's `callbacks` webhook (GET /v1/webhooks). A public http(s) URL.",
    )

    @model_validator(mode="after")
    def _one_start_time(self) -> JobCreate:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give either run_at or delay_seconds, not both")
        return self


class JobBatchItem(JobCreate):
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Per item, like the Idempotency-Key header of POST /v1/jobs.",
    )


MAX_BATCH = 1000


class JobBatchCreate(Strict):
    jobs: list[JobBatchItem] = Field(min_length=1, max_length=MAX_BATCH)
    on_complete: OnCompleteDefinition | None = Field(
        default=None,
        description="A job run once every accepted job has finished, whatever their outcome; its payload may use "
        '{"$ref": "batch"} (counts and ids of the succeeded, failed and cancelled jobs). The batch is then a '
        "workflow (its `workflow_id`); its items take type, payload, queue, priority and max_attempts only.",
    )

    @model_validator(mode="after")
    def _plain_items_with_on_complete(self) -> JobBatchCreate:
        if self.on_complete is not None:
            for index, item in enumerate(self.jobs):
                extra = sorted(item.model_fields_set & BATCH_ONLY_FIELDS)
                if extra:
                    raise ValueError(f"jobs[{index}]: {', '.join(extra)} cannot be given in a batch with on_complete "
                                     "(its jobs are a workflow's steps)")  # fmt: skip
        return self


BATCH_ONLY_FIELDS = {"run_at", "delay_seconds", "unique_key", "callback_url", "idempotency_key"}


class Progress(BaseModel):
    done: int | None
    total: int | None
    message: str | None


class JobRead(BaseModel):
    id: uuid.UUID
    type: str
    queue: str
    priority: int
    status: JobStatus
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    run_at: datetime | None
    next_attempt_at: datetime | None
    progress: Progress | None
    cancel_requested: bool
    error: dict[str, Any] | None
    error_fingerprint: str | None = Field(
        description="The cause of its last failed attempt: its failure group (GET /v1/failures/{fingerprint})."
    )
    failed_at: datetime | None = Field(description="When its last attempt failed.")
    worker: str | None
    expires_at: datetime | None = Field(description="Not started by then: cancelled as expired.")
    schedule_id: uuid.UUID | None = Field(description="The schedule that made this job, if one did.")
    schedule_slot: datetime | None = Field(description="The schedule's slot this job runs for.")
    callback_url: str | None
    workflow_id: uuid.UUID | None = Field(description="The workflow this job runs a step of (GET /v1/workflows/{id}).")
    workflow_step: str | None = Field(description="That step's name.")
    map_index: int | None = Field(description="In a mapped step: the item's place in the list (0, 1, …).")
    request_id: str | None = Field(
        description="The X-Request-ID of the request that submitted it (or the id the API made): every log line of "
        "the request and of the job's attempts carries it."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobRead:
        progress = None
        if job.progress_done is not None or job.progress_message is not None:
            progress = Progress(done=job.progress_done, total=job.progress_total, message=job.progress_message)
        return cls(
            id=job.id,
            type=job.type,
            queue=job.queue,
            priority=job.priority,
            status=JobStatus(job.status),
            payload=job.payload,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            run_at=job.run_at,
            next_attempt_at=job.next_attempt_at if job.status == JobStatus.RETRYING else None,
            progress=progress,
            cancel_requested=job.cancel_requested,
            error=job.error,
            error_fingerprint=job.error_fingerprint,
            failed_at=job.failed_at,
            worker=job.worker,
            expires_at=job.expires_at,
            schedule_id=job.schedule_id,
            schedule_slot=job.schedule_slot,
            callback_url=job.callback_url,
            workflow_id=job.workflow_id,
            workflow_step=job.workflow_step,
            map_index=job.map_index,
            request_id=job.request_id,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class JobListQuery(Strict):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)
    status: str | None = Field(default=None, description="Comma-separated statuses, e.g. `queued,running`.")
    type: str | None = Field(default=None, max_length=100)
    queue: str | None = Field(default=None, max_length=100)
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None

    @field_validator("status")
    @classmethod
    def _known_statuses(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = [s for s in value.split(",") if s not in {m.value for m in JobStatus}]
            if unknown:
                raise ValueError(f"unknown status {', '.join(unknown)}; one of {', '.join(s.value for s in JobStatus)}")
        return value


class EventRead(BaseModel):
    id: int
    kind: str
    attempt: int
    worker: str | None
    detail: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, event: JobEvent) -> EventRead:
        return cls(
            id=event.id,
            kind=event.kind,
            attempt=event.attempt,
            worker=event.worker,
            detail=event.detail,
            created_at=event.created_at,
        )


class EventList(BaseModel):
    items: list[EventRead]


class ReadTokenQuery(BaseModel):
    access_token: str | None = Field(
        default=None,
        max_length=1000,
        description="Instead of a key: a read token of this job (POST /v1/jobs/{id}/read-token), for browsers.",
    )


class ReadTokenRead(BaseModel):
    token: str = Field(description="Send as `?access_token=` on GET /v1/jobs/{id} and /stream of this job only.")
    job_id: uuid.UUID
    expires_at: datetime
    stream_url: str = Field(description="The job's event stream with the token, ready for `new EventSource(url)`.")


class SubmitQuery(BaseModel):
    read_token: bool = Field(
        default=False,
        description="Also answer with a read token of the new job (`read_token` in the body), as POST "
        "/v1/jobs/{id}/read-token would: a browser can follow the job from the submit's answer alone.",
    )


class JobSubmitted(JobRead):
    read_token: ReadTokenRead | None = Field(default=None, description="Present with `?read_token=true` only.")


class ResultRead(BaseModel):
    job_id: uuid.UUID
    data: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, result: JobResult) -> ResultRead:
        return cls(job_id=result.job_id, data=result.data, created_at=result.created_at)


class JobTypeRead(BaseModel):
    name: str
    description: str
    queue: str
    priority: int
    max_attempts: int
    payload_schema: dict[str, Any]
    result_schema: dict[str, Any]


class JobTypeList(BaseModel):
    items: list[JobTypeRead]


class QueuePauseRead(BaseModel):
    scope: str = Field(
        description="`tenant`: paused by one of this tenant's admin keys; `all`: by an operator for "
        "every tenant (`conveyor queues pause`), which only the operator can lift."
    )
    reason: str | None
    paused_by: str | None = Field(description="The key id that paused it (`cli` for an operator).")
    paused_at: datetime


class QueueRead(BaseModel):
    name: str
    paused: QueuePauseRead | None = Field(description="Set while workers claim none of this tenant's jobs in it.")
    counts: dict[str, int] = Field(
        description="This tenant's unfinished jobs in the queue, by status (scheduled, queued, running, retrying). "
        "Finished jobs are not counted here: their history only grows, and counting it made this view slower with "
        "every job. `succeeded_last_minute` and `failed_last_minute` give the recent ones, `GET /v1/jobs?status=` "
        "lists them, `GET /v1/failures` groups the failed ones, and `/metrics` counts every job since start."
    )
    depth: int = Field(description="Jobs waiting for a worker (queued).")
    oldest_queued_age_seconds: float | None
    succeeded_last_minute: int
    failed_last_minute: int
    failure_ratio: float | None = Field(
        description="Failed of the jobs that finished (succeeded or failed) in the last minute; null when none did."
    )


class QueuePauseCreate(Strict):
    reason: str | None = Field(default=None, max_length=500, description="Why, for whoever looks at it next.")


class QueueDrainCreate(Strict):
    reason: str = Field(min_length=1, max_length=500, description="Recorded on each cancelled job.")


class QueueDrained(BaseModel):
    cancelled: int = Field(description="Pending jobs (queued, scheduled, retrying) cancelled; running ones finish.")


class RetryFailedCreate(Strict):
    type: str | None = None
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    error_type: str | None = Field(default=None, max_length=200, description="The error's type, e.g. `TimeoutError`.")
    failed_after: AwareDatetime | None = Field(default=None, description="Failed at or after this time.")
    failed_before: AwareDatetime | None = Field(default=None, description="Failed before this time.")
    limit: int = Field(
        default=1000, ge=1, le=RETRY_LIMIT_MAX, description="At most this many jobs, oldest failure first."
    )


class RetryFailedRead(BaseModel):
    retried: int
    more: bool = Field(description="Failed jobs matching the filter are left: call again to retry the next ones.")


class QueueList(BaseModel):
    items: list[QueueRead]


class HealthRead(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: int = Field(description="202 accepted, 200 an existing job (idempotency or unique key), 4xx refused.")
    job: JobRead | None
    error: dict[str, Any] | None = Field(description="An RFC 9457 problem object when the item was refused.")


class BatchResult(BaseModel):
    items: list[BatchItemResult]
    accepted: int
    existing: int
    rejected: int
    workflow_id: uuid.UUID | None = Field(
        default=None, description="With on_complete: the workflow of the accepted jobs (GET /v1/workflows/{id})."
    )


class ScheduleRead(ScheduleDefinition):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    source: str = Field(description="`api`, or `file` when `conveyor schedule sync` owns it.")
    next_fire_at: datetime | None = Field(description="The next slot; null when paused or ended.")
    upcoming: list[datetime] = Field(description="The next five fire times (UTC); empty when paused or ended.")
    last_slot_at: datetime | None = Field(description="The latest slot that made a job.")
    last_job_id: uuid.UUID | None
    missed_slots: int = Field(description="Slots the misfire policy did not fire (beat was down, or paused).")
    last_error: str | None = Field(description="Why the last due slot could not make its job, if it could not.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleRead:
        values = {name: getattr(schedule, name) for name in cls.model_fields if name != "upcoming"}
        return cls.model_validate(values | {"upcoming": upcoming_slots(schedule)})


class ScheduleList(BaseModel):
    items: list[ScheduleRead]


# PATCH: any field of the definition; omitted fields keep their value, null clears an optional one. The merged
# definition is validated as a whole (so switching from cron to interval sends both: {"cron": null, ...}).
def _optional(annotation: Any) -> Any:
    return annotation | None


_UPDATE_FIELDS: dict[str, Any] = {
    name: (_optional(field.annotation), None) for name, field in ScheduleDefinition.model_fields.items()
}
ScheduleUpdate = create_model("ScheduleUpdate", __config__=ConfigDict(extra="forbid"), **_UPDATE_FIELDS)


class RunListQuery(Strict):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class DatasetVersionRead(BaseModel):
    version: int
    mode: str
    job_id: uuid.UUID | None
    rows_loaded: int
    rows_rejected: int
    row_count: int
    source: dict[str, Any] | None
    inputs: list[LineageInput] | None = Field(
        default=None, description="A derived version: the datasets and versions its job read."
    )
    schema_changes: list[dict[str, Any]] | None = Field(
        default=None,
        description="Columns this ingest widened as it met values its sample had not shown: `{column, from, to, line, "
        "value}` (integer → float, date → timestamp; nothing is lost).",
    )
    created_at: datetime


class LineageInput(BaseModel):
    dataset_id: uuid.UUID
    name: str = Field(description="The dataset's name when it was read.")
    version: int | None = Field(description="The version read (null: made before versions were recorded).")


class LineageNode(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    dataset_id: uuid.UUID
    version: int | None
    name: str
    exists: bool = Field(description="False once the dataset was deleted.")
    operation: str | None = Field(description="What made this version: ingest, aggregate, join or query.")
    job_id: uuid.UUID | None
    created_at: datetime | None
    source: dict[str, Any] | None = Field(description="An ingest's file (`file_id`, `filename`) or `url`.")
    inputs: list[LineageInput] = Field(description="The datasets and versions its job read (edges of the graph).")


class LineageRead(BaseModel):
    operation: str | None = Field(description="What made the current version: ingest, aggregate, join or query.")
    job_id: uuid.UUID | None = Field(description="The job that made it.")
    inputs: list[LineageInput] = Field(description="The datasets and versions that job read.")
    graph: list[LineageNode] = Field(
        description="The whole upstream graph, this dataset's current version first, then level by level up to the "
        "files and URLs the ingests loaded; each node's `inputs` are its edges."
    )
    truncated: bool = Field(description="True if the graph had more than 200 nodes and was cut.")


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    status: str = Field(description="`pending` until the first ingest succeeds, then `ready`; `failed` if it failed.")
    columns: list[ColumnSpec] | None = Field(description="The schema (declared, or inferred by the first ingest).")
    schema_inferred: bool
    row_count: int
    reject_count: int
    version: int = Field(description="Successful ingests so far.")
    source: dict[str, Any] | None
    last_job_id: uuid.UUID | None
    error: dict[str, Any] | None = Field(description="Why the last ingest failed, if it did.")
    created_at: datetime
    updated_at: datetime
    versions: list[DatasetVersionRead] | None = None
    lineage: LineageRead | None = Field(default=None, description="GET /v1/datasets/{id} only.")


class DatasetList(BaseModel):
    items: list[DatasetRead]


class DatasetAccepted(BaseModel):
    dataset: DatasetRead
    file_id: uuid.UUID | None = Field(
        description="The uploaded file (GET /v1/files/{id}), as its ingest job names it; null for a URL, which the "
        "job fetches (its file is then in the dataset's `source`)."
    )
    job: JobRead | None = Field(description="The ingest job; null with `ingest=false` (a workflow's step loads it).")


class DatasetFetch(Strict):
    """A dataset's file at an http(s) URL, which the worker fetches (through the SSRF guard) and ingests."""

    url: str = Field(max_length=2048, description="http or https; no credentials; redirects are not followed.")
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Default: the URL's file name.")
    dataset_id: uuid.UUID | None = Field(
        default=None, description="Load into this dataset instead of creating one (with `mode`)."
    )
    mode: Literal["append", "replace"] = Field(default="append", description="With `dataset_id` only.")
    format: Format | None = Field(
        default=None, description="Default: from the URL's file name (e.g. .csv.gz), else csv."
    )
    options: FileOptions = Field(default_factory=FileOptions)
    schema_: dict[str, Any] | list[Any] | Literal["evolve", "strict"] | None = Field(
        default=None,
        alias="schema",
        description="A new dataset's schema, as an upload's `schema` (default: inferred from the file); with "
        "`dataset_id`, `evolve` (the default: new columns are added) or `strict` (a file with new columns is refused).",
    )


class DatasetListQuery(Strict):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class RowsQuery(Strict):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10_000_000)
    filter: str | None = Field(
        default=None,
        max_length=2000,
        description="`column:op:value`, repeatable (all must hold); op: eq ne lt le gt ge contains is_null not_null.",
    )
    sort: str | None = Field(default=None, max_length=2000, description="Comma-separated columns; `-` for descending.")


class RowsPage(BaseModel):
    items: list[dict[str, Any]]
    limit: int
    offset: int


class RejectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int
    column: str | None
    value: str | None
    reason: str
    job_id: uuid.UUID


class RejectPage(BaseModel):
    items: list[RejectRead]
    limit: int
    offset: int
