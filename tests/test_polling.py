"""`get()` and `wait()` in the pure core, on a virtual clock: no sockets, no sleeping."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest

import mountsea
from mountsea._retry import PollPolicy
from mountsea._scheduler import Call, ClientState, Scheduler
from tests.helpers import make_task

REF = mountsea.TaskRef("producer", "t")
START = 100.0
Outcome = mountsea.Task | mountsea.APIError


def _server_error(status: int = 503, retry_after: float | None = None) -> mountsea.APIStatusError:
    cls = mountsea.RateLimitError if status == 429 else mountsea.ServerError
    return cls(f"HTTP {status}", status_code=status, retry_after=retry_after)


def _call(*, until_done: bool = True, timeout: float | None = None, **kwargs: Any) -> Call:
    """A `get()` (``until_done=False``) or a `wait()` starting at START, as the client builds them."""
    options: dict[str, Any] = {"policy": PollPolicy(), "max_retries": 2, "raise_on_failure": until_done}
    options.update(kwargs)
    deadline = None if timeout is None else START + timeout
    return Call(until_done=until_done, single=True, deadline=deadline, one_round=timeout == 0, **options)


class Driver:
    """Runs one call like a front end would, on a virtual clock; each answer comes back at once.

    ``outcomes`` are the answers in order, the last one repeating; an HTTP answer (anything
    but an `APIConnectionError`) comes with headers.
    """

    def __init__(self, call: Call, *outcomes: Outcome, state: ClientState | None = None, ref: Any = REF) -> None:
        self.state = ClientState(rng=random.Random(0)) if state is None else state
        self.scheduler = Scheduler([ref], call=call, state=self.state, now=START)
        self.outcomes = list(outcomes)
        self.now = START
        self.requests: list[float] = []  # virtual times at which requests were sent
        self.budgets: list[float | None] = []
        self.updates: list[str] = []

    def run(self) -> mountsea.Task:
        ready: list[mountsea.Task] = []
        while not (plan := self.scheduler.plan(self.now)).done:
            ready += plan.ready
            for tracked, budget in plan.send:
                self.requests.append(self.now)
                self.budgets.append(budget)
                outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
                headers: dict[str, str] | None = None if isinstance(outcome, mountsea.APIConnectionError) else {}
                update = self.scheduler.record(tracked, outcome, self.now, headers)
                if update is not None:
                    self.updates.append(update.raw_status)
            if not (plan.send or plan.ready):
                assert plan.wait, plan  # None would hang with nothing in flight, 0 would spin
                self.now += plan.wait
        [task] = ready
        return task

    def lines(self, level: int) -> list[str]:
        return [message % args for lvl, message, args, _ in self.scheduler.log if lvl == level]

    def gaps(self) -> list[float]:
        return [round(b - a, 3) for a, b in zip(self.requests, self.requests[1:], strict=False)]


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
    driver = Driver(_call(until_done=False), make_task("processing"))
    assert driver.run().raw_status == "processing"
    assert driver.requests == [100.0]
    assert driver.budgets == [None]


@pytest.mark.parametrize("max_retries", [0, 1, 2, 4])
def test_get_retries_transient_failures_max_retries_times(max_retries: int) -> None:
    driver = Driver(_call(until_done=False, max_retries=max_retries), _server_error())
    with pytest.raises(mountsea.ServerError):
        driver.run()
    assert len(driver.requests) == max_retries + 1
    assert len(driver.lines(logging.INFO)) == max_retries  # one line per retry, none for the last failure


def test_get_backoff_grows_exponentially_with_downward_jitter() -> None:
    driver = Driver(_call(until_done=False, max_retries=6), mountsea.APIConnectionError("refused"))
    with pytest.raises(mountsea.APIConnectionError):
        driver.run()
    gaps = [b - a for a, b in zip(driver.requests, driver.requests[1:], strict=False)]
    assert len(gaps) == 6
    for n, delay in enumerate(gaps):
        base = min(8.0, 0.5 * 2**n)
        assert 0.75 * base <= delay <= base


def test_each_retry_is_logged_with_the_task_the_reason_and_the_pause() -> None:
    outcomes = (_server_error(429, retry_after=7.0), mountsea.APIConnectionError("reset"), make_task("completed"))
    driver = Driver(_call(until_done=False), *outcomes)
    driver.run()
    assert driver.lines(logging.INFO) == [
        "producer task 't': HTTP 429; retry 1 in 7.00 s",
        f"producer task 't': APIConnectionError; retry 2 in {driver.requests[2] - driver.requests[1]:.2f} s",
    ]
    extras = [extra for _, _, _, extra in driver.scheduler.log]
    assert extras[0] == {"task_ref": REF, "retry_in": 7.0, "reason": "HTTP 429"}
    assert extras[1]["reason"] == "APIConnectionError"
    assert extras[1]["retry_in"] == pytest.approx(driver.requests[2] - driver.requests[1])


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
    driver = Driver(_call(until_done=until_done, timeout=600), error)
    with pytest.raises(mountsea.APIError) as caught:
        driver.run()
    assert caught.value is error
    assert driver.requests == [100.0]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 520, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    driver = Driver(_call(timeout=600), mountsea.APIStatusError("x", status_code=status), make_task("completed"))
    assert driver.run().succeeded
    assert len(driver.requests) == 2


def test_retry_after_is_obeyed_and_capped() -> None:
    outcomes = (_server_error(429, retry_after=7.0), _server_error(503, retry_after=3600.0), make_task("completed"))
    driver = Driver(_call(until_done=False), *outcomes)
    driver.run()
    assert driver.requests == [100.0, 107.0, 167.0]  # MAX_RETRY_AFTER


def test_wait_polls_on_the_policy_schedule_and_reports_each_change_once() -> None:
    statuses = ["pending", "pending", "processing", "processing", "processing"]
    outcomes = [make_task(status) for status in statuses] + [make_task("completed", result={"url": "u"})]
    driver = Driver(_call(timeout=600, policy=PollPolicy(jitter=0)), *outcomes)
    assert driver.run().succeeded
    assert driver.updates == ["pending", "processing", "completed"]
    assert driver.gaps() == [1.5, 2.25, 3.375, 5.0, 5.0]


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout"])
def test_wait_ends_unsuccessful_tasks_with_task_failed_error(status: str) -> None:
    task = make_task(status, error_message="boom", error_code=7)
    driver = Driver(_call(), task)
    with pytest.raises(mountsea.TaskFailedError) as caught:
        driver.run()
    assert caught.value.task is task
    assert driver.updates == [status]  # on_update still hears of the final status
    assert str(caught.value) == f"producer task 't-1' ended {status}: boom (error code 7)"


def test_wait_can_return_unsuccessful_tasks() -> None:
    assert Driver(_call(raise_on_failure=False), make_task("failed")).run() == make_task("failed")


def test_wait_retries_transient_failures_until_the_deadline() -> None:
    state = ClientState(rng=random.Random(3))
    driver = Driver(_call(timeout=30), make_task("processing"), mountsea.APIConnectionError("down"), state=state)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        driver.run()
    error = caught.value
    assert isinstance(error.__cause__, mountsea.APIConnectionError)
    assert error.task == make_task("processing")
    assert len(driver.requests) > 6  # many retries, not max_retries
    assert driver.requests[-1] <= 130.0
    failures = len(driver.requests) - 1
    assert str(error) == (
        "producer task 't' not done by the deadline (last status: processing); "
        f"the last {failures} attempt(s) in a row failed: down"
    )


def test_wait_never_sleeps_past_the_deadline_and_polls_once_more_before_it() -> None:
    driver = Driver(_call(timeout=4.0, policy=PollPolicy.fixed(1.5)), make_task("processing"))
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        driver.run()
    # 100, 101.5, 103: then 104.5 would be late, so a last poll goes out at 103.5.
    assert driver.requests == [100.0, 101.5, 103.0, 103.5]
    assert driver.budgets == [pytest.approx(104.0 - t) for t in driver.requests]
    assert driver.now < 104.0  # the error came without sleeping into the deadline
    assert str(caught.value) == "producer task 't' not done by the deadline (last status: processing)"


def test_the_last_poll_before_the_deadline_can_see_the_task_finish() -> None:
    driver = Driver(_call(timeout=1.0, policy=PollPolicy.fixed(1.5)), make_task("processing"), make_task("completed"))
    assert driver.run().succeeded
    assert driver.requests == [100.0, 100.5]  # not 101.5: half the time left


def test_no_last_poll_when_almost_no_time_is_left() -> None:
    driver = Driver(_call(timeout=0.04, policy=PollPolicy.fixed(1.5)), make_task("processing"))
    with pytest.raises(mountsea.WaitTimeoutError):
        driver.run()
    assert driver.requests == [100.0]


def test_a_retry_after_beyond_the_deadline_ends_the_wait_now() -> None:
    limited = _server_error(429, retry_after=30)
    driver = Driver(_call(timeout=10), limited)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        driver.run()
    assert caught.value.task is None
    assert caught.value.__cause__ is limited
    assert driver.now == 100.0


@pytest.mark.parametrize("status", ["processing", "completed"])
def test_zero_timeout_sends_exactly_one_request(status: str) -> None:
    task = make_task(status, service="xai", task_id="x")
    driver = Driver(_call(timeout=0), task, ref=mountsea.TaskRef("xai", "x"))
    if task.done:
        assert driver.run() is task
    else:
        with pytest.raises(mountsea.WaitTimeoutError) as caught:
            driver.run()
        assert caught.value.task is task
        assert str(caught.value) == "xai task 'x' not done by the deadline (last status: processing)"
    assert driver.requests == [100.0]
    assert driver.budgets == [None]  # bounded by the client's own timeout, not by the deadline


def test_zero_timeout_with_a_failed_request_says_so() -> None:
    driver = Driver(_call(timeout=0), _server_error(), ref=mountsea.TaskRef("xai", "x"))
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        driver.run()
    assert driver.requests == [100.0]
    assert str(caught.value) == (
        "xai task 'x' could not be read before the deadline; the last 1 attempt(s) in a row failed: HTTP 503"
    )


@pytest.mark.parametrize("max_retries", [0, 2])
@pytest.mark.parametrize("until_done", [False, True])
def test_a_server_never_reached_ends_the_call_after_max_retries(max_retries: int, until_done: bool) -> None:
    refused = mountsea.APIConnectionError("refused: 127.0.0.1:1", connecting=True)
    driver = Driver(_call(until_done=until_done, timeout=600, max_retries=max_retries), refused)
    with pytest.raises(mountsea.APIConnectionError) as caught:
        driver.run()
    assert caught.value is refused
    assert len(driver.requests) == max_retries + 1
    assert driver.requests[-1] < 110.0  # long before the deadline
    assert not driver.state.answered


def test_a_deadline_before_the_server_was_ever_reached_raises_the_connection_error() -> None:
    refused = mountsea.APIConnectionError("refused", connecting=True)
    driver = Driver(_call(timeout=1.0, max_retries=5), refused)
    with pytest.raises(mountsea.APIConnectionError) as caught:
        driver.run()
    assert caught.value is refused
    assert 1 < len(driver.requests) < 6


@pytest.mark.parametrize("answered_by", ["an earlier call", "this call"])
def test_after_an_answer_connect_failures_are_retried_until_the_deadline(answered_by: str) -> None:
    state = ClientState(rng=random.Random(0))
    refused = mountsea.APIConnectionError("refused", connecting=True)
    if answered_by == "an earlier call":
        Driver(_call(until_done=False), make_task("processing"), state=state).run()
        outcomes: tuple[Outcome, ...] = (refused,)
    else:
        outcomes = (_server_error(), refused)  # an error status is an answer too
    assert state.answered is (answered_by == "an earlier call")
    driver = Driver(_call(timeout=30), *outcomes, state=state)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        driver.run()
    assert state.answered
    assert caught.value.__cause__ is refused
    assert len(driver.requests) > 6
    assert driver.requests[-1] <= 130.0


def test_unknown_status_keeps_polling_and_warns_once_per_status_per_call() -> None:
    statuses = ["queued", "queued", "queued", "waiting", "queued"]
    outcomes = [make_task(status) for status in statuses] + [make_task("completed")]
    driver = Driver(_call(timeout=600), *outcomes)
    assert driver.run().succeeded
    assert driver.updates == ["queued", "waiting", "queued", "completed"]
    warnings = driver.lines(logging.WARNING)
    assert len(warnings) == 2
    assert "'queued'" in warnings[0]
    assert "'waiting'" in warnings[1]
    # The next call warns again.
    again = Driver(_call(timeout=600), make_task("queued"), make_task("completed"), state=driver.state)
    again.run()
    assert len(again.lines(logging.WARNING)) == 1
