"""The pure polling core, on a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import math
import random

import pytest

import mountsea
from mountsea._polling import Done, Fail, Poll, PollPolicy, Rules, Send, Step
from tests.helpers import make_task

REF = mountsea.TaskRef("producer", "t")


def _server_error(status: int = 503, retry_after: float | None = None) -> mountsea.APIStatusError:
    cls = mountsea.RateLimitError if status == 429 else mountsea.ServerError
    return cls(f"HTTP {status}", status_code=status, retry_after=retry_after)


class Clock:
    """Drives a Poll like a front end would, with virtual time."""

    def __init__(self, poll: Poll) -> None:
        self.poll = poll
        self.now = 100.0
        self.requests: list[float] = []  # virtual times at which requests were sent
        self.updates: list[str] = []
        self.step: Step = poll.start(self.now)

    def answer(self, outcome: mountsea.Task | mountsea.APIError) -> Step:
        """Sleep as the last step asked, send, and feed back ``outcome``."""
        step = self.step
        assert isinstance(step, Send), step
        assert step.at >= self.now
        self.now = step.at
        self.requests.append(self.now)
        if isinstance(outcome, mountsea.Task):
            self.step = self.poll.on_task(outcome, self.now)
        else:
            self.step = self.poll.on_error(outcome, self.now)
        if self.step.update is not None:
            self.updates.append(self.step.update.raw_status)
        return self.step


def test_default_policy_follows_the_docs_advice() -> None:
    policy = PollPolicy(jitter=0)
    delays = [policy.delay(n, random.Random(0)) for n in range(1, 7)]
    assert delays == [1.5, 2.25, 3.375, 5.0, 5.0, 5.0]
    assert mountsea.PollPolicy() == PollPolicy(initial=1.5, maximum=5.0, multiplier=1.5, jitter=0.1)


def test_jitter_only_shortens_the_pause() -> None:
    policy = PollPolicy(initial=2, maximum=2, multiplier=1, jitter=0.5)
    delays = [policy.delay(3, random.Random(seed)) for seed in range(200)]
    assert all(1.0 < d <= 2.0 for d in delays)
    assert len(set(delays)) > 100


def test_huge_poll_counts_do_not_overflow() -> None:
    assert PollPolicy(multiplier=1e300, maximum=9).delay(10**9, random.Random(0)) <= 9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": -1},
        {"initial": math.nan},
        {"maximum": math.inf},
        {"initial": 5, "maximum": 1},
        {"multiplier": 0.5},
        {"jitter": 1},
        {"jitter": -0.1},
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="PollPolicy"):
        PollPolicy(**kwargs)


def test_get_returns_the_first_task_even_if_not_done() -> None:
    clock = Clock(Poll(Rules(until_done=False), REF))
    assert clock.step == Send(100.0)
    step = clock.answer(make_task("processing"))
    assert isinstance(step, Done)
    assert step.task.raw_status == "processing"


@pytest.mark.parametrize("max_retries", [0, 1, 2, 4])
def test_get_retries_transient_failures_max_retries_times(max_retries: int) -> None:
    clock = Clock(Poll(Rules(until_done=False, max_retries=max_retries, rng=random.Random(1)), REF))
    for _ in range(max_retries):
        assert isinstance(clock.answer(_server_error()), Send)
    step = clock.answer(_server_error())
    assert isinstance(step, Fail)
    assert isinstance(step.error, mountsea.ServerError)
    assert len(clock.requests) == max_retries + 1


def test_get_backoff_grows_exponentially_with_downward_jitter() -> None:
    clock = Clock(Poll(Rules(until_done=False, max_retries=6, rng=random.Random(7)), REF))
    delays = []
    for _ in range(6):
        step = clock.answer(mountsea.APIConnectionError("refused"))
        assert isinstance(step, Send)
        delays.append(step.at - clock.now)
    for n, delay in enumerate(delays):
        base = min(8.0, 0.5 * 2**n)
        assert 0.75 * base <= delay <= base


@pytest.mark.parametrize(
    "error",
    [
        mountsea.BadRequestError("x", status_code=400),
        mountsea.AuthenticationError("x", status_code=401),
        mountsea.PermissionDeniedError("x", status_code=403),
        mountsea.NotFoundError("x", status_code=404),
        mountsea.APIStatusError("x", status_code=409),
        mountsea.ResponseValidationError("x"),
        mountsea.APIError("redirect loop"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("until_done", [False, True])
def test_permanent_errors_end_the_call_at_once(error: mountsea.APIError, until_done: bool) -> None:
    clock = Clock(Poll(Rules(until_done=until_done, deadline=1e9), REF))
    assert clock.answer(error) == Fail(error)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 520, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=1e9), REF))
    error = mountsea.APIStatusError("x", status_code=status)
    assert isinstance(clock.answer(error), Send)


def test_retry_after_is_obeyed_and_capped() -> None:
    clock = Clock(Poll(Rules(until_done=False), REF))
    step = clock.answer(_server_error(429, retry_after=7.0))
    assert step == Send(107.0)
    step = clock.answer(_server_error(503, retry_after=3600.0))
    assert step == Send(167.0)  # MAX_RETRY_AFTER


def test_wait_polls_on_the_policy_schedule_and_reports_each_change_once() -> None:
    poll = Poll(Rules(until_done=True, deadline=100.0 + 600, policy=PollPolicy(jitter=0)), REF)
    clock = Clock(poll)
    for status in ["pending", "pending", "processing", "processing", "processing"]:
        assert isinstance(clock.answer(make_task(status)), Send)
    step = clock.answer(make_task("completed", result={"url": "u"}))
    assert isinstance(step, Done)
    assert step.task.succeeded
    assert clock.updates == ["pending", "processing", "completed"]
    gaps = [round(b - a, 3) for a, b in zip(clock.requests, clock.requests[1:], strict=False)]
    assert gaps == [1.5, 2.25, 3.375, 5.0, 5.0]


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout"])
def test_wait_ends_unsuccessful_tasks_with_task_failed_error(status: str) -> None:
    clock = Clock(Poll(Rules(until_done=True), REF))
    task = make_task(status, error_message="boom", error_code=7)
    step = clock.answer(task)
    assert isinstance(step, Fail)
    assert isinstance(step.error, mountsea.TaskFailedError)
    assert step.error.task is task
    assert step.update is task  # on_update still hears of the final status
    assert str(step.error) == f"producer task 't-1' ended {status}: boom (error code 7)"


def test_wait_can_return_unsuccessful_tasks() -> None:
    clock = Clock(Poll(Rules(until_done=True, raise_on_failure=False), REF))
    assert clock.answer(make_task("failed")) == Done(make_task("failed"), make_task("failed"))


def test_wait_retries_transient_failures_until_the_deadline() -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=100.0 + 30, rng=random.Random(3)), REF))
    clock.answer(make_task("processing"))
    while isinstance(clock.step, Send):
        clock.answer(mountsea.APIConnectionError("down"))
    assert isinstance(clock.step, Fail)
    error = clock.step.error
    assert isinstance(error, mountsea.WaitTimeoutError)
    assert isinstance(error.__cause__, mountsea.APIConnectionError)
    assert error.task == make_task("processing")
    assert len(clock.requests) > 6  # many retries, not max_retries
    assert clock.requests[-1] <= 130.0


def test_wait_never_sleeps_past_the_deadline_and_polls_once_more_before_it() -> None:
    poll = Poll(Rules(until_done=True, deadline=100.0 + 4.0, policy=PollPolicy.fixed(1.5)), REF)
    clock = Clock(poll)
    while isinstance(clock.step, Send):
        assert clock.step.at < 104.0
        clock.answer(make_task("processing"))
        budget = poll.budget(clock.now)
        assert budget == pytest.approx(104.0 - clock.now)
    # 100, 101.5, 103: then 104.5 would be late, so a last poll goes out at 103.5.
    assert clock.requests == [100.0, 101.5, 103.0, 103.5]
    assert isinstance(clock.step, Fail)
    assert isinstance(clock.step.error, mountsea.WaitTimeoutError)
    assert str(clock.step.error) == "producer task 't' not done by the deadline (last status: processing)"


def test_the_last_poll_before_the_deadline_can_see_the_task_finish() -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=100.0 + 1.0, policy=PollPolicy.fixed(1.5)), REF))
    clock.answer(make_task("processing"))
    assert clock.step == Send(100.5, make_task("processing"))  # not 101.5: half the time left
    assert isinstance(clock.answer(make_task("completed")), Done)


def test_no_last_poll_when_almost_no_time_is_left() -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=100.0 + 0.04, policy=PollPolicy.fixed(1.5)), REF))
    assert isinstance(clock.answer(make_task("processing")), Fail)


def test_a_retry_after_beyond_the_deadline_ends_the_wait_now() -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=100.0 + 10), REF))
    step = clock.answer(_server_error(429, retry_after=30))
    assert isinstance(step, Fail)
    assert isinstance(step.error, mountsea.WaitTimeoutError)
    assert step.error.task is None
    assert clock.now == 100.0


def test_zero_timeout_sends_nothing() -> None:
    poll = Poll(Rules(until_done=True, deadline=100.0), mountsea.TaskRef("xai", "x"))
    step = poll.start(100.0)
    assert isinstance(step, Fail)
    assert str(step.error) == "xai task 'x' could not be read before the deadline"


def test_unknown_status_keeps_polling_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(Poll(Rules(until_done=True, deadline=1e9), REF))
    for _ in range(3):
        assert isinstance(clock.answer(make_task("queued")), Send)
    assert clock.updates == ["queued"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "'queued'" in warnings[0].getMessage()
    assert isinstance(clock.answer(make_task("completed")), Done)
