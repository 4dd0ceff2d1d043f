"""core.group_commit: callers that arrive while a group runs go in the next group together; each gets its own outcome,
and a failed group fails its own callers only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from core.group_commit import GroupCommit


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class HeldFirstGroup:
    """A `run` that records its groups and holds the first one until released, so that callers queue behind it."""

    def __init__(self, fail_group: int | None = None) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.fail_group = fail_group

    def __call__(self, items: Sequence[int]) -> list[str]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            assert self.release.wait(10)
        if len(self.groups) == self.fail_group:
            raise ConnectionError("the database went away")
        return [f"done {item}" for item in items]


def hold_then_queue(commit: GroupCommit[int, str], run: HeldFirstGroup, pool: ThreadPoolExecutor,
                    later: list[int]) -> tuple[Future[str], list[Future[str]]]:  # fmt: skip
    first = pool.submit(commit.submit, 0)
    wait_until(lambda: len(run.groups) == 1)
    rest = []
    for item in later:
        rest.append(pool.submit(commit.submit, item))
        wait_until(lambda: commit.queued == len(rest) + 1)  # arrival order is submit order
    run.release.set()
    return first, rest


def test_callers_arriving_while_a_group_runs_share_the_next_one() -> None:
    run = HeldFirstGroup()
    commit = GroupCommit(run)
    with ThreadPoolExecutor(8) as pool:
        first, rest = hold_then_queue(commit, run, pool, list(range(1, 8)))
        assert first.result(10) == "done 0"
        assert [f.result(10) for f in rest] == [f"done {i}" for i in range(1, 8)]
    assert run.groups == [[0], list(range(1, 8))]
    assert commit.queued == 0
    assert commit.submit(9) == "done 9"  # alone, at once
    assert run.groups[-1] == [9]


def test_a_group_is_at_most_max_group_callers() -> None:
    run = HeldFirstGroup()
    commit = GroupCommit(run, max_group=3)
    with ThreadPoolExecutor(8) as pool:
        first, rest = hold_then_queue(commit, run, pool, list(range(1, 8)))
        assert [f.result(10) for f in [first, *rest]] == [f"done {i}" for i in range(8)]
    assert run.groups == [[0], [1, 2, 3], [4, 5, 6], [7]]


def test_a_failed_group_raises_to_each_of_its_callers_and_no_other() -> None:
    run = HeldFirstGroup(fail_group=2)
    commit = GroupCommit(run, max_group=3)
    with ThreadPoolExecutor(8) as pool:
        first, rest = hold_then_queue(commit, run, pool, [1, 2, 3, 4])
        assert first.result(10) == "done 0"
        for future in rest[:3]:
            with pytest.raises(ConnectionError, match="went away"):
                future.result(10)
        assert rest[3].result(10) == "done 4"
    assert run.groups == [[0], [1, 2, 3], [4]]


def test_a_run_that_answers_the_wrong_number_of_outcomes_fails_its_group() -> None:
    commit: GroupCommit[int, str] = GroupCommit(lambda items: ["one"] * (len(items) + 1))
    with pytest.raises(RuntimeError, match="a group of 1 got 2 outcomes"):
        commit.submit(1)
    assert commit.queued == 0
