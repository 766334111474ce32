"""The core: every decision of `get`, `wait`, `as_completed` and `wait_all`, pure.

No I/O, no clock, no logging: a call is a batch (`get()` and `wait()` are batches of one) that a driver runs as
`_base.py` says. It decides when each task is polled next (a heap of next-request times: a sleeping task costs a heap
entry, not a thread), keeps at most ``max_concurrency`` requests in flight and the client's pace (`_pacing`), places
each poll from the task's age and what the client learned (`_learning`), backs off and decides when a failure ends
the call, pauses every task of a service after a 429 (or a 5xx with ``Retry-After``), and keeps one deadline for the
whole call, with a last poll before it.
"""

from __future__ import annotations

import collections
import heapq
import logging
import random
from collections.abc import Iterable, Mapping
from functools import partial
from operator import attrgetter
from typing import Any, Final

import attrs

from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    BatchError,
    MountseaError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    WaitTimeoutError,
)
from ._learning import MIN_DELAY, SAMPLES, Durations, age_of, duration_of
from ._pacing import Pacer, advertises
from ._retry import PollPolicy, http_date, is_retryable, retry_delay
from ._task import Task, TaskRef, TaskStatus

# Errors that no other task of the batch could escape: stop the whole batch at once.
_FATAL: Final = (AuthenticationError, PermissionDeniedError)
# A last poll, when the schedule's next one would fall past the deadline, goes out this long before it (or half the
# time left, if less), so a task that finished in time is seen in time; with less than MIN_FINAL_BUDGET left there is
# no point in asking.
FINAL_POLL_RESERVE: Final = 1.0
MIN_FINAL_BUDGET: Final = 0.05
LONGEST_WAIT: Final = 1e9  # seconds (~31 years): the clock plus this still fits the OS's time types
# With the rate bound, the due tasks ranked at once, the longest due: a plan costs no more in a batch of 100,000.
RANKED: Final = 256

LogLine = tuple[int, str, tuple[Any, ...], dict[str, Any]]  # level, message, arguments, extra


@attrs.define
class ClientState:
    """What a client learns across its calls."""

    rng: random.Random = attrs.field(factory=random.Random)
    answered: bool = False  # an HTTP answer (any status) came from the server
    pacer: Pacer = attrs.field(factory=Pacer)
    durations: collections.defaultdict[str, Durations] = attrs.field(
        factory=lambda: collections.defaultdict(Durations)  # per service
    )


@attrs.frozen
class Call:
    """What one call asked for, shared by all its tasks.

    ``until_done=False`` is `get()`: the first Task ends it, and a transient failure is retried at most ``max_retries``
    times. Otherwise poll until the task is terminal, retrying for as long as the ``deadline`` (absolute, on the
    driver's monotonic clock) allows. ``single`` calls (`get`, `wait`) raise the task's own error; batches collect
    errors. A deadline of zero (``one_round``) still sends each task one request.
    """

    until_done: bool
    single: bool
    deadline: float | None
    policy: PollPolicy
    max_retries: int
    raise_on_failure: bool = False
    one_round: bool = False


@attrs.define(eq=False)
class Tracked:
    """One task of a call and where it stands."""

    ref: TaskRef
    index: int  # position in the input: the heap's tie-break, and the order of pending tasks
    last: Task | None = None  # the last Task seen
    polls: int = 0  # Tasks received
    failures: int = 0  # failed requests in a row
    error: APIError | None = None  # the last of them
    final_poll: bool = False  # the last poll before the deadline was scheduled
    born: float | None = None  # when the task was created (else first seen), on the driver's clock
    answered_at: float = 0.0  # when the last Task came
    result: Task | None = None  # set once finished, kept only for `results()`


@attrs.frozen
class Plan:
    """What the driver does next."""

    ready: list[Task]  # finished since the last plan: hand them out
    send: list[tuple[Tracked, float | None]] = attrs.Factory(list)  # request these now, within a budget (s)
    wait: float | None = None  # seconds to wait for answers before planning again (None: for one)
    done: bool = False  # the call is over


class Scheduler:
    """The decisions of one call over one or many tasks.

    With ``keep_results`` (`wait_all`) every finished Task stays until `results()`; without (`as_completed`) a task is
    forgotten once handed out, so a batch of any size holds only its unfinished tasks.
    """

    def __init__(
        self,
        items: Iterable[object],  # TaskRef or Task; anything else is a ValueError
        *,
        call: Call,
        state: ClientState,
        now: float,
        max_concurrency: int = 1,
        keep_results: bool = False,
    ) -> None:
        self.call, self.state, self.max_concurrency, self._start = call, state, max_concurrency, now
        self.errors: dict[TaskRef, APIError] = {}
        self.log: list[LogLine] = []  # what the driver should log, drained by it
        self._sent: set[Tracked] = set()  # requests in flight
        self._heap: list[tuple[float, int, Tracked]] = []  # (when, input index, task)
        self._paused: dict[str, float] = {}  # service -> end of its shared pause
        self._ready: list[Task] = []  # finished, not yet handed out
        self._expired: list[Tracked] = []  # no further poll fits before the deadline
        self._fatal: MountseaError | None = None  # raised once the finished are handed out
        self._untried = 0  # tasks not yet sent their one request of a zero deadline
        self._warned: set[str] = set()  # unknown statuses already warned about
        # Durations a batch read, learned when it ends (meanwhile they would be the short ones only): a uniform
        # sample of them (a reservoir), so that a stream of any length holds no more.
        self._learned: list[tuple[str, str, float]] = []
        self._durations_read = 0
        self._order: list[Tracked] | None = [] if keep_results else None  # one per input item
        by_ref: dict[TaskRef, Tracked] = {}
        for item in items:
            if not isinstance(item, TaskRef | Task):
                msg = f"expected a TaskRef or a Task, not {type(item).__name__}"
                raise ValueError(msg)
            ref, last = (item.ref, item) if isinstance(item, Task) else (item, None)
            tracked = by_ref.get(ref)
            if tracked is None:
                tracked = by_ref[ref] = Tracked(ref, len(by_ref), last)
                if last is not None and last.done:
                    self._finish(tracked, last)  # already final: hand it back, no request
                else:
                    self._untried += call.one_round
                    self._push(now, tracked)
            if self._order is not None:
                self._order.append(tracked)  # duplicates share one Tracked
        self._size = len(by_ref)

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def results(self) -> list[Task]:
        """The finished tasks in input order (``keep_results`` only)."""
        return [tracked.result for tracked in self._order or () if tracked.result is not None]

    def plan(self, now: float) -> Plan:
        """What to do at ``now``; raises the call's error once it cannot succeed."""
        ready, self._ready = self._ready, []
        deadline = self.call.deadline
        past = deadline is not None and now >= deadline and not self._untried
        if self._fatal is not None or past or not (self._sent or self._heap):
            if ready:  # hand out what finished first: no result is lost
                return Plan(ready, wait=0.0)
            self._end()
            return Plan(ready, done=True)
        pacer, room = self.state.pacer, self.max_concurrency - len(self._sent)
        ranked = pacer.rate(now) is not None  # a ceiling binds: the due most likely done go first
        due: list[tuple[Tracked, float | None, float]] = []  # with their budgets and when they fell due
        held: list[Tracked] = []
        while self._heap and self._heap[0][0] <= now and len(due) < (RANKED if ranked else room):
            when, _, tracked = heapq.heappop(self._heap)
            if self._paused.get(tracked.ref.service, 0.0) > now:
                held.append(tracked)
            elif tracked.polls + tracked.failures == 0 and self.call.one_round:
                due.append((tracked, None, when))  # a zero deadline's one request: bounded by the client timeout
            elif deadline is not None and now >= deadline:
                self._expired.append(tracked)
            else:
                due.append((tracked, None if deadline is None else deadline - now, when))
        for tracked in held:  # resume when the service's pause ends
            self._schedule(tracked, self._paused[tracked.ref.service], now)
        if ranked:  # a stable sort: among the equally likely, the longest due first
            due.sort(key=partial(self._likelihood, now), reverse=True)
        token_wait, send = 0.0, [(tracked, budget) for tracked, budget, _ in due]
        for position in range(len(due)):
            if position >= room or (ranked and (token_wait := pacer.take(now)) > 0):
                del send[position:]
                for later, _, when in due[position:]:  # still due since then: a task kept waiting keeps its place
                    self._push(when, later)
                break
        self._sent.update(tracked for tracked, _ in send)
        wake = self._heap[0][0] if self._heap and len(self._sent) < self.max_concurrency else None
        if wake is not None:
            wake = max(wake, now + token_wait)
        if deadline is not None and (self._sent or wake is not None) and not self._untried:
            wake = deadline if wake is None else min(wake, deadline)  # answers still out then are given up
        return Plan(ready, send, None if wake is None else min(max(0.0, wake - now), LONGEST_WAIT))

    def _likelihood(self, now: float, item: tuple[Tracked, float | None, float]) -> float:
        """How likely a due task is done by ``now``: with the rate bound, the likeliest go first."""
        tracked = item[0]
        if tracked.last is None:
            return 1.0  # not seen yet: a first look comes first
        durations = self.state.durations[tracked.ref.service]
        if tracked.born is None or not durations.ready:
            # Unknown: as likely as not. Ranked last, a service with nothing learned yet would wait behind every task
            # of one learned, for as long as the rate binds; at one half, each of those drops below it once polled.
            return 0.5
        return durations.done_probability(tracked.answered_at - tracked.born, now - tracked.born)

    def record(
        self, tracked: Tracked, outcome: Task | APIError, now: float, headers: Mapping[str, str] | None = None
    ) -> Task | None:
        """An outcome for ``tracked`` arrived at ``now`` (``headers``: an HTTP answer's, of any status, if one came).

        Returns the status change to report, if any."""
        self._sent.discard(tracked)
        date = None
        if headers is not None:
            self.state.answered = True
            # Parsed only when of use: for a limit's reset, or the age of a task to poll again.
            if (isinstance(outcome, Task) and not outcome.done) or advertises(headers):
                date = http_date(headers.get("date", ""))
            status = outcome.status_code if isinstance(outcome, APIStatusError) else 200
            self.state.pacer.observe(status, headers, now, date)
        if self.call.one_round and tracked.polls + tracked.failures == 0:
            self._untried -= 1
        if isinstance(outcome, Task):
            return self._on_task(tracked, outcome, now, date)
        self._on_error(tracked, outcome, now)
        return None

    def _on_task(self, tracked: Tracked, task: Task, now: float, date: float | None) -> Task | None:
        update = task if tracked.last is None or tracked.last.raw_status != task.raw_status else None
        tracked.last, tracked.failures, tracked.error, tracked.answered_at = task, 0, None, now
        tracked.polls += 1
        # The server's clock for both ends, else when this call first saw it. A Date is whole seconds, so
        # each answer says the task is at least this old: the oldest it is said to be is the nearest.
        if (age := age_of(task, date)) is not None:
            tracked.born = now - age if tracked.born is None else min(tracked.born, now - age)
        elif tracked.born is None:
            tracked.born = self._start
        if (took := duration_of(task)) is not None:  # a task seen once, already finished, teaches too
            self._durations_read += 1
            if len(self._learned) < SAMPLES:
                self._learned.append((task.service, task.id, took))
            elif (slot := self.state.rng.randrange(self._durations_read)) < SAMPLES:
                self._learned[slot] = (task.service, task.id, took)
            if self.call.single:
                self._learn()
        if task.status is TaskStatus.UNKNOWN and task.raw_status not in self._warned:
            self._warned.add(task.raw_status)
            why = "%s has status %r, unknown to this version of mountsea; treating it as not done"
            self.log.append((logging.WARNING, why, (tracked.ref.label, task.raw_status), {}))
        if not self.call.until_done or task.done:
            if self.call.raise_on_failure and task.done and not task.succeeded:
                self._fatal = TaskFailedError(task)
            else:
                self._finish(tracked, task)
        else:
            self._schedule(tracked, now + self._delay(tracked, now), now, final_poll=True)
        return update

    def _delay(self, tracked: Tracked, now: float) -> float:
        """The pause before the next poll of a task not done yet."""
        policy, rng = self.call.policy, self.state.rng
        if policy.latency is not None and tracked.born is not None:
            durations = self.state.durations[tracked.ref.service]
            if (delay := durations.next_delay(now - tracked.born, policy.latency)) is not None:
                return max(MIN_DELAY, delay * (1 + policy.jitter * (rng.random() - 0.5)))
        return policy.delay(tracked.polls, rng)

    def _on_error(self, tracked: Tracked, error: APIError, now: float) -> None:
        tracked.failures += 1
        tracked.error = error
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        delay = retry_delay(tracked.failures, retry_after, self.state.rng)
        if isinstance(error, RateLimitError) or (retry_after is not None and isinstance(error, ServerError)):
            # The server asks for less traffic (a 429, or a 5xx with Retry-After): every task of the service backs off.
            service = tracked.ref.service
            self._paused[service] = max(self._paused.get(service, 0.0), now + delay)
        out_of_retries = tracked.failures > self.call.max_retries
        unreachable = _unreachable(error, self.state)
        if not is_retryable(error) or (out_of_retries and (unreachable or not self.call.until_done)):
            if self.call.single or unreachable or isinstance(error, _FATAL):
                self._fatal = self._fatal or error
            else:
                self.errors[tracked.ref] = error
            return
        reason = f"HTTP {error.status_code}" if isinstance(error, APIStatusError) else type(error).__name__
        extra = {"task_ref": tracked.ref, "retry_in": delay, "reason": reason}
        self.log.append(
            (logging.INFO, "%s: %s; retry %d in %.2f s", (tracked.ref.label, reason, tracked.failures, delay), extra)
        )
        self._schedule(tracked, now + delay, now)

    def _schedule(self, tracked: Tracked, at: float, now: float, *, final_poll: bool = False) -> None:
        deadline = self.call.deadline
        if deadline is None or at < deadline:
            self._push(at, tracked)
        elif final_poll and not tracked.final_poll and (left := deadline - now) > MIN_FINAL_BUDGET:
            tracked.final_poll = True
            self._push(deadline - min(FINAL_POLL_RESERVE, left / 2), tracked)
        else:  # no request can start before the deadline: say so now rather than sleep into it
            self._expired.append(tracked)

    def _push(self, when: float, tracked: Tracked) -> None:
        heapq.heappush(self._heap, (when, tracked.index, tracked))

    def _finish(self, tracked: Tracked, task: Task) -> None:
        self._ready.append(task)
        if self._order is not None:
            tracked.result = task

    def _learn(self) -> None:
        for service, task_id, took in self._learned:
            self.state.durations[service].add(took, self.state.rng, task_id)
        self._learned.clear()

    def _end(self) -> None:
        """The call is over: learn what it read, and raise unless every task finished."""
        self._learn()
        if self._fatal is not None:
            raise self._fatal
        # What is still scheduled or in flight at the deadline (a server trickling its answer outlasts httpx's per-read
        # timeouts) is pending.
        expired = sorted([*self._expired, *(t for _, _, t in self._heap), *self._sent], key=attrgetter("index"))
        self._heap.clear()
        self._sent.clear()
        # A deadline that came before the server was ever reached is not the problem.
        unreachable = next((t.error for t in expired if _unreachable(t.error, self.state)), None)
        if unreachable is not None:
            raise unreachable
        if expired and self.call.single:  # the error carries the last Task seen and the last failure
            first = expired[0]
            if first.last is None:
                message = f"{first.ref.label} could not be read before the deadline"
            else:
                message = f"{first.ref.label} not done by the deadline (last status: {first.last.raw_status})"
            if first.error is not None:
                message += f"; the last {first.failures} attempt(s) in a row failed: {first.error}"
            error = WaitTimeoutError(message, task=first.last)
            error.__cause__ = first.error  # not `raise from`: with no failure, a caller's exception stays its context
            raise error
        if expired:
            pending = [t.last or t.ref for t in expired]
            message = f"{len(expired)} of {self._size} tasks not done by the deadline"
            raise WaitTimeoutError(message, pending=pending, finished=self.results(), errors=self.errors)
        if self.errors:
            raise BatchError(self.errors, finished=self.results())


def _unreachable(error: APIError | None, state: ClientState) -> bool:
    # Until the server has answered once, a connection that cannot be made is a wrong host or port, or a server that is
    # down: say so rather than retry until the deadline.
    return isinstance(error, APIConnectionError) and error.connecting and not state.answered
