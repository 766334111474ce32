"""The fan-out core, on a virtual clock: completion order, the concurrency cap, shared pauses, the deadline."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import mountsea
from mountsea._retry import PollPolicy
from mountsea._scheduler import Call, ClientState, Scheduler, Tracked
from tests.helpers import make_task

Answer = Callable[[mountsea.TaskRef, int], mountsea.Task | mountsea.APIError]


def _refs(n: int, service: str = "producer") -> list[mountsea.TaskRef]:
    return [mountsea.TaskRef(service, f"t{i}") for i in range(n)]


class Sim:
    """Runs a Scheduler like a front end would, on a virtual clock; every request takes ``latency`` seconds."""

    def __init__(self, scheduler: Scheduler, answer: Answer, latency: float = 0.01) -> None:
        self.scheduler, self.answer, self.latency = scheduler, answer, latency
        self.now = 0.0
        self.sent: list[tuple[float, mountsea.TaskRef]] = []
        self.peak = 0
        self.yielded: list[mountsea.Task] = []
        self.updates: list[tuple[str, str]] = []
        self._polls: dict[mountsea.TaskRef, int] = {}

    def run(self) -> list[mountsea.Task]:
        in_flight: list[tuple[float, Tracked]] = []
        while not (plan := self.scheduler.plan(self.now)).done:
            self.yielded += plan.ready
            for tracked, _ in plan.send:
                self.sent.append((self.now, tracked.ref))
                in_flight.append((self.now + self.latency, tracked))
            assert self.scheduler.in_flight == len(in_flight)
            self.peak = max(self.peak, len(in_flight))
            times = [t for t, _ in in_flight]
            if plan.wait is not None:
                times.append(self.now + plan.wait)
            assert plan.ready or (times and min(times) > self.now), plan  # a plan with nothing to do must not spin
            self.now = min(times)
            for item in [i for i in in_flight if i[0] <= self.now]:
                in_flight.remove(item)
                ref = item[1].ref
                self._polls[ref] = self._polls.get(ref, 0) + 1
                outcome = self.answer(ref, self._polls[ref])
                headers: dict[str, str] | None = None if isinstance(outcome, mountsea.APIConnectionError) else {}
                update = self.scheduler.record(item[1], outcome, self.now, headers)
                if update is not None:
                    self.updates.append((ref.id, update.raw_status))
        return self.yielded


def _scheduler(
    items: Sequence[mountsea.TaskRef | mountsea.Task],
    *,
    timeout: float | None = None,
    state: ClientState | None = None,
    max_retries: int = 2,
    **kwargs: Any,
) -> Scheduler:
    """A batch starting at 0, as `as_completed` (or, with ``keep_results``, `wait_all`) builds it."""
    call = Call(
        until_done=True,
        single=False,
        deadline=None if timeout is None else timeout,
        policy=PollPolicy.fixed(1.0),
        max_retries=max_retries,
        one_round=timeout == 0,
    )
    state = ClientState(rng=random.Random(0)) if state is None else state
    options: dict[str, Any] = {"max_concurrency": 4, **kwargs}
    return Scheduler(items, call=call, state=state, now=0.0, **options)


def _finishes_after(polls: Callable[[mountsea.TaskRef], int], status: str = "completed") -> Answer:
    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task:
        done = n >= polls(ref)
        return make_task(status if done else "processing", service=ref.service, task_id=ref.id)

    return answer


def test_tasks_come_out_in_completion_order_exactly_once() -> None:
    refs = _refs(6)
    polls = {ref: 6 - i for i, ref in enumerate(refs)}  # t5 finishes first
    sim = Sim(_scheduler(refs, max_concurrency=10), _finishes_after(polls.__getitem__))
    done = sim.run()
    assert [t.id for t in done] == ["t5", "t4", "t3", "t2", "t1", "t0"]
    assert len(sim.sent) == sum(polls.values())  # no request beyond what the schedule needs


def test_the_concurrency_cap_holds_and_sleeping_tasks_hold_no_slot() -> None:
    refs = _refs(50)
    sim = Sim(_scheduler(refs, max_concurrency=7), _finishes_after(lambda ref: 3))
    assert len(sim.run()) == 50
    assert sim.peak == 7
    assert len(sim.sent) == 150


def test_failed_tasks_are_delivered_like_others() -> None:
    refs = _refs(3)
    answer = _finishes_after(lambda ref: 1, status="failed")
    done = Sim(_scheduler(refs), answer).run()
    assert [t.raw_status for t in done] == ["failed"] * 3


def test_a_rate_limit_pauses_every_task_of_that_service_only() -> None:
    refs = _refs(4, "producer") + _refs(4, "xai")
    limited = {"hit": False}

    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task | mountsea.APIError:
        if ref == mountsea.TaskRef("producer", "t0") and not limited["hit"]:
            limited["hit"] = True
            return mountsea.RateLimitError("slow down", status_code=429, retry_after=30.0)
        return make_task("completed" if n >= 2 else "processing", service=ref.service, task_id=ref.id)

    sim = Sim(_scheduler(refs, max_concurrency=1), answer)
    sim.run()
    hit_at = sim.sent[0][0] + sim.latency
    producer_during_pause = [t for t, ref in sim.sent if ref.service == "producer" and hit_at < t < hit_at + 30.0]
    xai_during_pause = [t for t, ref in sim.sent if ref.service == "xai" and hit_at < t < hit_at + 30.0]
    assert producer_during_pause == []
    assert xai_during_pause  # the other service kept going


@pytest.mark.parametrize(("retry_after", "paused"), [(5.0, True), (None, False)])
def test_a_503_with_retry_after_pauses_the_service_but_a_plain_503_does_not(
    retry_after: float | None, paused: bool
) -> None:
    first = {"done": False}

    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task | mountsea.APIError:
        if not first["done"]:
            first["done"] = True
            return mountsea.ServerError("busy", status_code=503, retry_after=retry_after)
        return make_task("completed", service=ref.service, task_id=ref.id)

    sim = Sim(_scheduler(_refs(3), max_concurrency=1), answer)
    sim.run()
    second_request_at = sim.sent[1][0]
    assert (second_request_at >= 5.0) is paused


def test_the_batch_deadline_raises_with_resumable_pending_tasks() -> None:
    refs = _refs(4)
    polls = {refs[0]: 1, refs[1]: 2, refs[2]: 100, refs[3]: 100}
    sim = Sim(_scheduler(refs, timeout=5.0), _finishes_after(polls.__getitem__))
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        sim.run()
    error = caught.value
    assert [t.id for t in sim.yielded] == ["t0", "t1"]
    assert error.finished == []  # as_completed handed them out already
    assert [(p.id, p.raw_status) for p in error.pending] == [("t2", "processing"), ("t3", "processing")]  # type: ignore[union-attr]
    assert str(error) == "2 of 4 tasks not done by the deadline"
    assert max(t for t, _ in sim.sent) < 5.0
    # Resuming with the pending tasks polls only those.
    resumed = Sim(_scheduler(error.pending), _finishes_after(lambda ref: 1)).run()
    assert [t.id for t in resumed] == ["t2", "t3"]


def test_a_zero_timeout_sends_each_task_one_request() -> None:
    refs = _refs(3)
    answer = _finishes_after(lambda ref: 1 if ref.id == "t0" else 100)
    sim = Sim(_scheduler(refs, timeout=0, max_concurrency=2), answer)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        sim.run()
    assert [ref.id for _, ref in sim.sent] == ["t0", "t1", "t2"]
    assert [t.id for t in sim.yielded] == ["t0"]
    assert [(p.id, p.raw_status) for p in caught.value.pending] == [("t1", "processing"), ("t2", "processing")]  # type: ignore[union-attr]


def test_a_missing_task_does_not_lose_the_others() -> None:
    refs = _refs(3)

    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task | mountsea.APIError:
        if ref.id == "t1":
            return mountsea.NotFoundError("gone", status_code=404)
        return make_task("completed" if n >= 2 else "pending", service=ref.service, task_id=ref.id)

    sim = Sim(_scheduler(refs), answer)
    with pytest.raises(mountsea.BatchError) as caught:
        sim.run()
    assert [t.id for t in sim.yielded] == ["t0", "t2"]
    assert caught.value.finished == []  # as_completed handed them out already
    assert list(caught.value.errors) == [mountsea.TaskRef("producer", "t1")]
    assert isinstance(caught.value.errors[refs[1]], mountsea.NotFoundError)


def test_an_authentication_error_stops_the_batch_at_once() -> None:
    sim = Sim(
        _scheduler(_refs(5), max_concurrency=1), lambda ref, n: mountsea.AuthenticationError("no", status_code=401)
    )
    with pytest.raises(mountsea.AuthenticationError):
        sim.run()
    assert len(sim.sent) == 1


@pytest.mark.parametrize("timeout", [None, 600.0])
@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_server_never_reached_ends_the_batch_after_max_retries(timeout: float | None, max_retries: int) -> None:
    refused = mountsea.APIConnectionError("refused: 127.0.0.1:1", connecting=True)
    scheduler = _scheduler(_refs(3), timeout=timeout, max_retries=max_retries, keep_results=True)
    sim = Sim(scheduler, lambda ref, n: refused)
    with pytest.raises(mountsea.APIConnectionError) as caught:
        sim.run()
    assert caught.value is refused
    # Each task tried 1 + max_retries times at most, and the first to run out ended the batch.
    assert 1 + max_retries <= len(sim.sent) <= 3 * (1 + max_retries)
    assert sim.now < 60.0


def test_after_an_answer_a_batch_retries_connect_failures_until_the_deadline() -> None:
    refs = _refs(2)
    refused = mountsea.APIConnectionError("refused", connecting=True)

    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task | mountsea.APIError:
        if ref.id == "t0":
            return make_task("processing" if n == 1 else "completed", task_id=ref.id)
        return refused

    sim = Sim(_scheduler(refs, timeout=30.0), answer)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        sim.run()
    assert [t.id for t in sim.yielded] == ["t0"]
    assert caught.value.pending == [refs[1]]
    assert len([ref for _, ref in sim.sent if ref.id == "t1"]) > 6  # many retries, not max_retries
    assert max(t for t, _ in sim.sent) < 30.0


def test_finished_tasks_given_as_input_are_handed_back_without_a_request() -> None:
    done = make_task("completed", task_id="old")
    items: list[mountsea.TaskRef | mountsea.Task] = [
        done,
        mountsea.TaskRef("producer", "t0"),
        mountsea.TaskRef("producer", "t0"),
    ]
    scheduler = _scheduler(items, keep_results=True)
    sim = Sim(scheduler, _finishes_after(lambda ref: 1))
    assert [t.id for t in sim.run()] == ["old", "t0"]
    assert [ref.id for _, ref in sim.sent] == ["t0"]
    assert [t.id for t in scheduler.results()] == ["old", "t0", "t0"]


def test_on_update_sees_each_change_once_per_task() -> None:
    sim = Sim(_scheduler(_refs(2)), _finishes_after(lambda ref: 3))
    sim.run()
    assert sorted(sim.updates) == [("t0", "completed"), ("t0", "processing"), ("t1", "completed"), ("t1", "processing")]


@pytest.mark.parametrize("cap", [0, -1, 1.5, True])
def test_bad_concurrency_is_rejected(cap: object) -> None:
    # The client checks it before building the Scheduler; no request is made.
    with mountsea.Mountsea(api_key="test-key") as client, pytest.raises(ValueError, match="max_concurrency"):
        client.as_completed(_refs(1), max_concurrency=cap)  # type: ignore[arg-type]


def test_bad_items_are_rejected() -> None:
    with pytest.raises(ValueError, match="TaskRef or a Task"):
        _scheduler(["t1"])  # type: ignore[list-item]


def test_requests_still_out_at_the_deadline_are_given_up() -> None:
    # A server trickling its answers: each request takes 10 s, the batch has 5.
    sim = Sim(_scheduler(_refs(3), timeout=5.0), _finishes_after(lambda ref: 1), latency=10.0)
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        sim.run()
    assert sim.now == 5.0
    assert caught.value.pending == _refs(3)
    assert sim.yielded == []


def test_a_task_finished_beside_a_fatal_answer_is_still_handed_out() -> None:
    # Both answers arrive together: t0 completed, t1 refused. t0 must not be lost.
    def answer(ref: mountsea.TaskRef, n: int) -> mountsea.Task | mountsea.APIError:
        if ref.id == "t1":
            return mountsea.PermissionDeniedError("no", status_code=403)
        return make_task("completed", service=ref.service, task_id=ref.id)

    sim = Sim(_scheduler(_refs(3), max_concurrency=2), answer)
    with pytest.raises(mountsea.PermissionDeniedError):
        sim.run()
    assert [t.id for t in sim.yielded] == ["t0"]
    assert [ref.id for _, ref in sim.sent] == ["t0", "t1"]  # nothing sent after the refusal
