"""`conveyor queues` on each backend's database: an operator's pause holds every tenant's jobs, drain and
retry-failed say how many they took, and each command refuses an unknown queue with what is known."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from cli.main import main
from core.db import make_sessionmaker
from core.jobs import claim_job
from core.models import ALL_TENANTS, Job, QueuePause
from core.registry import Registry
from core.submit import JobRequest, submit_job
from tests.support.backends import broker_redis


def submit(engine: Engine, registry: Registry, tenant: str) -> Job:
    with make_sessionmaker(engine)() as session, session.begin():
        job, _ = submit_job(session, registry=registry, known_queues=["default", "webhooks"],
                            request=JobRequest(type="echo", payload={"message": "m"}, tenant_id=tenant))  # fmt: skip
        return job


def test_queues_pause_resume_drain_and_retry_failed(
    clean_db: Engine, database_url: str, registry: Registry, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        env = {"CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_DATA_DIR": str(tmp_path),
               "CONVEYOR_BROKER_URL": broker_redis("embedded", tmp_path, stack)}  # fmt: skip
        runner = CliRunner()

        def run(*args: str) -> str:
            result = runner.invoke(main, ["queues", *args], env=env)
            assert result.exit_code == 0, result.output
            return result.output

        jobs = [submit(clean_db, registry, tenant) for tenant in ("acme", "globex")]
        assert "paused default for every tenant" in run("pause", "default", "--reason", "upgrade")
        sessions = make_sessionmaker(clean_db)
        with sessions() as session, session.begin():
            assert [claim_job(session, job_id=j.id, worker="w", lease_seconds=5) for j in jobs] == [None, None]
            assert session.get_one(QueuePause, ("default", ALL_TENANTS)).reason == "upgrade"
        listed = run("list")
        assert "default" in listed and "paused for every tenant (upgrade)" in listed and "2 queued" in listed
        assert "resumed default; 2 waiting jobs" in run("resume", "default")

        assert "cancelled 1 pending jobs" in run("drain", "default", "--reason", "bad batch", "--tenant", "acme",
                                                 "--yes")  # fmt: skip
        with sessions() as session, session.begin():
            assert [session.get_one(Job, j.id).status for j in jobs] == ["cancelled", "queued"]
            session.execute(update(Job).where(Job.id == jobs[1].id).values(
                status="failed", error={"type": "TimeoutError", "message": "slow"}))  # fmt: skip
        assert "retried 0 failed jobs" in run("retry-failed", "--error-type", "ValueError")
        assert "retried 1 failed jobs" in run("retry-failed", "--error-type", "TimeoutError", "--queue", "default")
        with sessions() as session:
            assert session.scalar(select(Job.status).where(Job.id == jobs[1].id)) == "queued"

        for args in (["pause", "nope"], ["resume", "nope"], ["drain", "nope", "--reason", "x", "--yes"],
                     ["retry-failed", "--queue", "nope"]):  # fmt: skip
            refused = runner.invoke(main, ["queues", *args], env=env)
            assert refused.exit_code == 1 and "Known queues: default, webhooks" in refused.output, args
        not_paused = runner.invoke(main, ["queues", "resume", "default"], env=env)
        assert not_paused.exit_code == 1 and "is not paused" in not_paused.output


def test_a_drain_moves_the_workflows_of_the_jobs_it_cancels(
    clean_db: Engine, database_url: str, registry: Registry, tmp_path: Path
) -> None:
    """The CLI's sessions release and publish like the API's: draining a workflow's queued job fails the workflow
    (fail_fast) and releases its on_complete step, published to the broker."""
    from core.publish import process_sessions
    from core.queue import RecordingPublisher
    from core.settings import Settings
    from core.types import utcnow
    from core.workflows.definition import WorkflowDefinition
    from core.workflows.models import Workflow
    from core.workflows.submit import WorkflowRequest, submit_workflow

    with ExitStack() as stack:
        broker = broker_redis("embedded", tmp_path, stack)
        env = {"CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_DATA_DIR": str(tmp_path), "CONVEYOR_BROKER_URL": broker}
        settings = Settings(database_url=database_url, data_dir=tmp_path, broker_url=broker)
        sessions = process_sessions(clean_db, settings, registry, RecordingPublisher())
        definition = WorkflowDefinition.model_validate({"name": "drained", "steps": [
            {"name": "a", "type": "echo", "payload": {"message": "m"}}],
            "on_complete": {"type": "echo", "payload": {"message": "done"}}})  # fmt: skip
        with sessions() as session, session.begin():
            flow, _ = submit_workflow(session, WorkflowRequest(definition, tenant_id="acme"), now=utcnow())
        result = CliRunner().invoke(main, ["queues", "drain", "default", "--reason", "incident", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        with sessions() as session:
            workflow = session.get_one(Workflow, flow.id)
            assert (workflow.status, workflow.failed_step) == ("failed", "a")
            [callback] = session.scalars(
                select(Job).where(Job.workflow_id == flow.id, Job.workflow_step == "on_complete")
            )
            assert callback.status == "queued" and callback.published_at is not None  # the CLI published it
