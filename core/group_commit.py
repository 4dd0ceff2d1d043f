"""Group commit: concurrent callers share one unit of work (one transaction, one publish) instead of one each.

LevelDB's writer queue, without PostgreSQL's `commit_delay`: a caller that finds nobody ahead of it runs a group at
once, made of itself and whoever queued while the previous group ran; callers that arrive meanwhile wait and go in
the next group together. Nothing ever waits for company: at idle a group is one caller and costs a lock, under load
N callers pay for one insert, one commit and one publish. The caller at the head of the queue runs the group in its
own thread (no extra thread, no hand-off at idle).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

MAX_GROUP = 100  # a bound on one transaction's size (and on the time its first caller waits for the last)


class _Waiter(Generic[Item, Outcome]):
    __slots__ = ("done", "error", "item", "outcome")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """`submit(item)` returns `run(group)[i]` for the item's place in the group `run` was given. `run` must return
    one outcome per item, in order; an exception it raises is raised to every caller of that group (it committed
    nothing for any of them)."""

    def __init__(self, run: Callable[[Sequence[Item]], Sequence[Outcome]], max_group: int = MAX_GROUP) -> None:
        self._run = run
        self._max_group = max_group
        self._queue: deque[_Waiter[Item, Outcome]] = deque()
        self._changed = threading.Condition()

    @property
    def queued(self) -> int:
        """Callers in the queue, the running group's included."""
        with self._changed:
            return len(self._queue)

    def submit(self, item: Item) -> Outcome:
        me: _Waiter[Item, Outcome] = _Waiter(item)
        with self._changed:
            self._queue.append(me)
            while not me.done and self._queue[0] is not me:
                self._changed.wait()
            group = None if me.done else [self._queue[i] for i in range(min(len(self._queue), self._max_group))]
        if group is not None:  # at the head of the queue: this caller runs the next group, itself first
            self._run_group(group)
        if me.error is not None:
            raise me.error
        return me.outcome  # type: ignore[return-value]  # set with done, for every member

    def _run_group(self, group: list[_Waiter[Item, Outcome]]) -> None:
        outcomes: Sequence[Outcome] = ()
        error: BaseException | None = None
        try:
            outcomes = self._run([w.item for w in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"a group of {len(group)} got {len(outcomes)} outcomes")
        except BaseException as exc:  # every member must be released, whatever happened
            error = exc
        with self._changed:
            for index, waiter in enumerate(group):
                self._queue.popleft()
                waiter.error = error
                waiter.outcome = None if error is not None else outcomes[index]
                waiter.done = True
            self._changed.notify_all()
