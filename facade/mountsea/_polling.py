"""The polling core: one `get()` or `wait()` as a pure state machine.

No I/O and no clock here. A front end asks `Poll` what to do, does it, and reports
back what happened with the time it happened::

    step = poll.start(now())
    while isinstance(step, Send):
        sleep_until(step.at)
        try:
            task = fetch(timeout=poll.budget(now()))  # time left, measured as it is sent
        except APIError as exc:
            step = poll.on_error(exc, now())
        else:
            step = poll.on_task(task, now())
    # Done: return step.task; Fail: raise step.error

Every step may carry an ``update``: a Task whose status changed, to hand to the
caller's ``on_update`` before acting on the step.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Final

import attrs

from ._errors import APIError, APIStatusError, MountseaError, TaskFailedError, WaitTimeoutError
from ._retry import is_retryable, retry_delay
from ._task import Task, TaskRef, TaskStatus

__all__ = ["DEFAULT_POLL_POLICY", "Done", "Fail", "Poll", "PollPolicy", "Rules", "Send", "Step"]

logger: Final = logging.getLogger("mountsea")


def _finite_non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        msg = f"PollPolicy.{attribute.name} must be a finite number >= 0, not {value!r}"
        raise ValueError(msg)


@attrs.frozen
class PollPolicy:
    """How often `wait()` asks for a task, in seconds.

    The n-th pause (from 0) is ``min(maximum, initial * multiplier ** n) * (1 - jitter * U)``
    with ``U`` uniform in [0, 1). The defaults follow the API docs: music takes 30-120 s
    and the docs advise polling every 3-5 s, so start at 1.5 s (short tasks finish
    early), grow by half each time, and settle at 5 s: 1.5, 2.25, 3.4, 5, 5, ...
    A 10 % downward jitter keeps many waiting clients from polling in lockstep.
    """

    initial: float = attrs.field(default=1.5, converter=float, validator=_finite_non_negative)
    maximum: float = attrs.field(default=5.0, converter=float, validator=_finite_non_negative)
    multiplier: float = attrs.field(default=1.5, converter=float, validator=_finite_non_negative)
    jitter: float = attrs.field(default=0.1, converter=float, validator=_finite_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0:
            msg = f"PollPolicy.initial must be > 0, not {self.initial!r}"
            raise ValueError(msg)
        if self.maximum < self.initial:
            msg = f"PollPolicy.maximum ({self.maximum!r}) must be >= initial ({self.initial!r})"
            raise ValueError(msg)
        if self.multiplier < 1:
            msg = f"PollPolicy.multiplier must be >= 1, not {self.multiplier!r}"
            raise ValueError(msg)
        if self.jitter >= 1:
            msg = f"PollPolicy.jitter is a fraction in [0, 1), not {self.jitter!r}"
            raise ValueError(msg)

    @classmethod
    def fixed(cls, interval: float) -> PollPolicy:
        """Poll every ``interval`` seconds, without growth or jitter."""
        return cls(initial=interval, maximum=interval, multiplier=1.0, jitter=0.0)

    def delay(self, polls: int, rng: random.Random) -> float:
        """The pause after the ``polls``-th answer (``polls`` counts from 1)."""
        exponent = min(max(polls - 1, 0), 64)
        try:
            base = min(self.maximum, self.initial * self.multiplier**exponent)
        except OverflowError:
            base = self.maximum
        return base * (1 - self.jitter * rng.random()) if self.jitter else base


DEFAULT_POLL_POLICY: Final = PollPolicy()


# A last poll, when the schedule's next one would fall past the deadline, goes out this
# long before it (or half the time left, if less), so a task that finished in time is
# seen in time; with less than MIN_FINAL_BUDGET left there is no point in asking.
FINAL_POLL_RESERVE: Final = 1.0
MIN_FINAL_BUDGET: Final = 0.05


@attrs.frozen
class Send:
    """Sleep until ``at`` (on the caller's monotonic clock), then request the task."""

    at: float
    update: Task | None = None  # a status change to report to `on_update` first


@attrs.frozen
class Done:
    """Stop: ``task`` is the answer."""

    task: Task
    update: Task | None = None  # a status change to report to `on_update` first


@attrs.frozen
class Fail:
    """Stop: raise ``error``."""

    error: MountseaError
    update: Task | None = None  # a status change to report to `on_update` first


Step = Send | Done | Fail


@attrs.frozen
class Rules:
    """What governs the polls of one call: shared by every task of a batch.

    ``until_done=False`` is `get()`: the first Task ends it, and a transient failure is
    retried at most ``max_retries`` times. ``until_done=True`` is `wait()`: poll until the
    task is terminal, retrying transient failures for as long as the ``deadline``
    (absolute, on the caller's monotonic clock; None for none) allows.
    """

    until_done: bool
    deadline: float | None = None
    policy: PollPolicy = DEFAULT_POLL_POLICY
    max_retries: int = 2
    raise_on_failure: bool = True
    rng: random.Random = attrs.field(factory=random.Random, eq=False)


@attrs.define(eq=False)
class Poll:
    """The decisions of one call, for one task, under its `Rules`.

    Only what differs from task to task lives here: a batch holds one per unfinished task.
    """

    rules: Rules
    ref: TaskRef  # the task, to name it in messages
    last: Task | None = None  # the last Task seen
    polls: int = 0  # answers received
    failures: int = 0  # transient failures in a row
    _warned: bool = False
    _final_poll: bool = False  # the last poll before the deadline was scheduled

    def start(self, now: float) -> Step:
        """The first step: request at once."""
        return self._send(0.0, now)

    def budget(self, now: float) -> float | None:
        """Seconds a request sent at ``now`` may take (None: no deadline)."""
        deadline = self.rules.deadline
        return None if deadline is None else deadline - now

    def on_task(self, task: Task, now: float) -> Step:
        """A Task arrived at ``now``."""
        update = task if self.last is None or self.last.raw_status != task.raw_status else None
        self.last, self.failures = task, 0
        self.polls += 1
        if task.status is TaskStatus.UNKNOWN and not self._warned:
            self._warned = True
            logger.warning(
                "%s task %r has status %r, unknown to this version of mountsea; treating it as not done",
                task.service,
                task.id,
                task.raw_status,
            )
        if not self.rules.until_done:
            return Done(task, update)
        if task.done:
            if self.rules.raise_on_failure and not task.succeeded:
                return Fail(TaskFailedError(task), update)
            return Done(task, update)
        return self._send(self.rules.policy.delay(self.polls, self.rules.rng), now, update, final_poll=True)

    def on_error(self, error: APIError, now: float) -> Step:
        """A request failed at ``now`` with ``error``: retry it, or stop with it."""
        if not is_retryable(error):
            return Fail(error)
        self.failures += 1
        if not self.rules.until_done and self.failures > self.rules.max_retries:
            return Fail(error)
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        step = self._send(retry_delay(self.failures, retry_after, self.rules.rng), now)
        if isinstance(step, Fail):
            step.error.__cause__ = error  # the deadline passed while retrying this
        return step

    def _send(self, delay: float, now: float, update: Task | None = None, *, final_poll: bool = False) -> Send | Fail:
        at, deadline = now + delay, self.rules.deadline
        if deadline is None or at < deadline:
            return Send(at, update)
        left = deadline - now
        if final_poll and not self._final_poll and left > MIN_FINAL_BUDGET:
            self._final_poll = True
            return Send(deadline - min(FINAL_POLL_RESERVE, left / 2), update)
        # No request can start before the deadline (a Retry-After or backoff reaches
        # past it, or the last poll was made): say so now rather than sleep into it.
        return Fail(self.timeout_error(), update)

    @property
    def label(self) -> str:
        """The task as messages name it, e.g. ``producer task 't-1'``."""
        # Built on demand: a batch keeps thousands of Polls and rarely needs one.
        return f"{self.ref.service} task {self.ref.id!r}"

    def timeout_error(self) -> WaitTimeoutError:
        """The error for a deadline that passed, carrying the last Task seen."""
        if self.last is None:
            return WaitTimeoutError(f"{self.label} could not be read before the deadline")
        status = self.last.raw_status
        return WaitTimeoutError(f"{self.label} not done by the deadline (last status: {status})", task=self.last)
