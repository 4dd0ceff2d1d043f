"""What a failed attempt records for its API clients: type, message and the handler's frames as paths inside their
packages; never the executor's frames or this host's absolute paths."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tasks.fail import DeliberateFailure, FailPayload
from tasks.fail import run as fail
from worker.executor import error_info


class Strict(BaseModel):
    n: int


def raised(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


class Ctx:
    attempt = 1


def test_a_handlers_error_shows_its_own_frames_relative_to_their_package() -> None:
    error = error_info(raised(lambda: fail(FailPayload(times=1), Ctx())))  # type: ignore[arg-type]
    assert error["type"] == "DeliberateFailure" and "attempt 1 of the first 1" in error["message"]
    assert 'File "tasks/fail.py", line' in error["traceback"] and ", in run" in error["traceback"]
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert error["traceback"].rstrip().endswith(f"DeliberateFailure: {error['message']}")
    root = str(Path(__file__).resolve().parents[2])
    assert root not in error["traceback"] and 'File "/' not in error["traceback"]
    assert "worker/executor.py" not in error["traceback"]
    assert issubclass(DeliberateFailure, RuntimeError)


def test_a_librarys_frames_are_relative_to_site_packages() -> None:
    error = error_info(raised(lambda: Strict.model_validate({"n": "x"})))
    assert error["type"] == "ValidationError"
    assert 'File "pydantic/main.py"' in error["traceback"] and "site-packages" not in error["traceback"]


def helper_that_raises() -> None:
    Strict.model_validate({"n": "x"})


def handler(payload: object, ctx: object) -> None:
    helper_that_raises()


def test_where_names_the_innermost_frame_in_the_handlers_file() -> None:
    """A library's error raised through the handler's file is placed at the handler file's innermost frame; without
    a handler (or outside its file), at the innermost frame of all."""
    exc = raised(lambda: handler(None, None))
    assert error_info(exc, handler)["where"] == "tests/worker/test_error_info.py:helper_that_raises"
    assert error_info(exc)["where"] == "pydantic/main.py:model_validate"
    failed = raised(lambda: fail(FailPayload(times=1), Ctx()))  # type: ignore[arg-type]
    assert error_info(failed, fail)["where"] == "tasks/fail.py:run"
