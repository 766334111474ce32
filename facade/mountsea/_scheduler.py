"""The fan-out core behind `as_completed` and `wait_all`: pure, like `_polling`.

One `Scheduler` tracks many tasks, each driven by its own `Poll` machine (the same
decisions as a single `wait()`), and decides which requests to send and when:

* a heap of next-request times, so a sleeping task costs a heap entry, not a thread
  or a coroutine;
* at most ``max_concurrency`` requests in flight;
* one rate budget per service: a 429, or a 503 with ``Retry-After``, pauses every task
  of that service until the pause ends, not just the task that got it;
* one deadline for the whole batch.

A front end loops: send `due()` requests, wait until `wakeup()` or until an answer
arrives, feed answers to `on_outcome()`, and stop when `over()` says so.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from typing import Final, TypeGuard

import attrs

from ._errors import (
    APIError,
    APIStatusError,
    AuthenticationError,
    BatchError,
    MountseaError,
    PermissionDeniedError,
    RateLimitError,
    WaitTimeoutError,
)
from ._polling import Done, Poll, PollPolicy, Rules, Send
from ._retry import MAX_RETRY_AFTER
from ._task import Task, TaskRef

__all__ = ["Scheduler", "Tracked"]

# Errors that no other task of the batch could escape: stop the whole batch at once.
_FATAL: Final = (AuthenticationError, PermissionDeniedError)


@attrs.define(eq=False)
class Tracked(Poll):
    """One task of a batch: its polling machine, plus where it stands in the batch.

    A subclass rather than a holder of a `Poll`: one object per task, not two.
    """

    index: int = 0  # position in the input: the heap's tie-break, and the order of pending tasks
    result: Task | None = None  # set once finished, kept only for `results()`


class Scheduler:
    """Decides, for many tasks at once, which to request when. No I/O, no clock.

    With ``keep_results`` (`wait_all`) every finished Task stays until `results()`; without
    (`as_completed`) a task is forgotten once handed out by `take_ready()`, so a batch of
    any size holds only its unfinished tasks.
    """

    def __init__(
        self,
        items: Iterable[TaskRef | Task],
        *,
        now: float,
        timeout: float | None,
        policy: PollPolicy,
        max_concurrency: int,
        rng: random.Random,
        keep_results: bool = False,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            msg = f"max_concurrency must be an int >= 1, not {max_concurrency!r}"
            raise ValueError(msg)
        self.deadline = None if timeout is None else now + timeout
        self.max_concurrency = max_concurrency
        self._sent: set[Tracked] = set()  # requests in flight
        self.errors: dict[TaskRef, APIError] = {}
        self._paused: dict[str, float] = {}  # service -> end of its shared pause
        self._heap: list[tuple[float, int, Tracked]] = []  # (when, input index, task)
        self._ready: list[Task] = []  # finished, not yet handed out
        self._expired: list[Tracked] = []  # no further poll fits before the deadline
        self._fatal: MountseaError | None = None  # a 401 or 403: the whole batch stops
        by_ref: dict[TaskRef, Tracked] = {}
        self._order: list[Tracked] | None = [] if keep_results else None  # one per input item
        rules = Rules(until_done=True, deadline=self.deadline, policy=policy, raise_on_failure=False, rng=rng)
        for item in items:
            ref = _as_ref(item)
            tracked = by_ref.get(ref)
            if tracked is None:
                last = item if isinstance(item, Task) else None
                tracked = by_ref[ref] = Tracked(rules, ref, last, index=len(by_ref))
                if last is not None and last.done:
                    self._finish(tracked, last)  # already final: hand it back, no request
                else:
                    self._push(now, tracked)
            if self._order is not None:
                self._order.append(tracked)  # duplicates share one Tracked
        self._size = len(by_ref)

    def __len__(self) -> int:
        return self._size

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._sent)

    def _finish(self, tracked: Tracked, task: Task) -> None:
        self._ready.append(task)
        if self._order is not None:
            tracked.result = task

    def _push(self, when: float, tracked: Tracked) -> None:
        heapq.heappush(self._heap, (when, tracked.index, tracked))  # the index: shared, not a new int

    def budget(self, now: float) -> float | None:
        """Seconds a request sent now may take (None: no deadline)."""
        return None if self.deadline is None else self.deadline - now

    def due(self, now: float) -> list[Tracked]:
        """Tasks to request now; counts them as in flight."""
        out: list[Tracked] = []
        held: list[Tracked] = []
        while self._heap and self._heap[0][0] <= now and len(self._sent) + len(out) < self.max_concurrency:
            _, _, tracked = heapq.heappop(self._heap)
            pause = self._paused.get(tracked.ref.service, 0.0)
            if pause > now:
                held.append(tracked)
            elif self.deadline is not None and now >= self.deadline:
                self._expired.append(tracked)
            else:
                out.append(tracked)
        for tracked in held:  # resume when the service's pause ends
            resume = self._paused[tracked.ref.service]
            if self.deadline is not None and resume >= self.deadline:
                self._expired.append(tracked)
            else:
                self._push(resume, tracked)
        self._sent.update(out)
        return out

    def wakeup(self) -> float | None:
        """When to call `due()` and `over()` again if no answer comes first (None: wait for one)."""
        when = self._heap[0][0] if self._heap and len(self._sent) < self.max_concurrency else None
        if self._sent and self.deadline is not None:  # answers still out at the deadline are given up
            when = self.deadline if when is None else min(when, self.deadline)
        return when

    def on_outcome(self, tracked: Tracked, outcome: Task | APIError, now: float) -> Task | None:
        """An answer for ``tracked`` arrived at ``now``. Returns the status change to report, if any."""
        self._sent.remove(tracked)
        if isinstance(outcome, Task):
            step = tracked.on_task(outcome, now)
        else:
            step = tracked.on_error(outcome, now)
            if _pauses_service(outcome):
                # However this task fares, its service asked for quiet: every task waits.
                end = step.at if isinstance(step, Send) else now + min(outcome.retry_after or 0.0, MAX_RETRY_AFTER)
                self._paused[tracked.ref.service] = max(self._paused.get(tracked.ref.service, 0.0), end)
        if isinstance(step, Send):
            self._push(step.at, tracked)
        elif isinstance(step, Done):
            self._finish(tracked, step.task)
        elif isinstance(step.error, WaitTimeoutError):
            self._expired.append(tracked)
        elif isinstance(step.error, _FATAL):
            # Raised by `over()`, once the tasks that finished meanwhile have been handed out.
            self._fatal = self._fatal or step.error
        elif isinstance(step.error, APIError):
            self.errors[tracked.ref] = step.error
        else:  # pragma: no cover - Poll fails only with the errors above
            raise step.error
        return step.update

    def take_ready(self) -> list[Task]:
        """Tasks that finished since the last call, in completion order."""
        ready, self._ready = self._ready, []
        return ready

    def results(self) -> list[Task]:
        """The finished tasks in input order (``keep_results`` only)."""
        return [tracked.result for tracked in self._order or () if tracked.result is not None]

    def over(self, now: float) -> bool:
        """True when every task is finished; raises when the batch cannot finish.

        The errors' ``finished`` lists `results()`: empty without ``keep_results``, as
        every finished task has been handed out by then.
        """
        if self._fatal is not None:
            raise self._fatal
        if (self._sent or self._heap) and (self.deadline is None or now < self.deadline):
            return False
        # Past the deadline: what is still scheduled, and what is still in flight (a server
        # trickling its answer outlasts httpx's per-read timeouts), is pending.
        self._expired += (tracked for _, _, tracked in self._heap)
        self._expired += self._sent
        self._heap.clear()
        self._sent.clear()
        if self._expired:
            pending = [t.last or t.ref for t in sorted(self._expired, key=_input_order)]
            message = f"{len(self._expired)} of {self._size} tasks not done by the deadline"
            raise WaitTimeoutError(message, pending=pending, finished=self.results(), errors=self.errors)
        if self.errors:
            raise BatchError(self.errors, finished=self.results())
        return True


def _input_order(tracked: Tracked) -> int:
    return tracked.index


def _as_ref(item: object) -> TaskRef:
    if isinstance(item, TaskRef):
        return item
    if isinstance(item, Task):
        return item.ref
    msg = f"expected a TaskRef or a Task, not {type(item).__name__}"
    raise ValueError(msg)


def _pauses_service(error: MountseaError) -> TypeGuard[APIStatusError]:
    # The server is asking for less traffic: every task of the service should back off.
    return isinstance(error, RateLimitError) or (
        isinstance(error, APIStatusError) and error.status_code == 503 and error.retry_after is not None
    )
