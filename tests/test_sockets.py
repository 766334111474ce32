"""Both front ends over real sockets against FakeMountsea: retries, deadlines, drops, redirects, fan-out."""

from __future__ import annotations

import gc
import gzip
import json
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import httpx
import pytest

import mountsea
from mountsea.testing import FakeMountsea, Fault
from tests.helpers import Front

FAST = 0.02  # a poll interval that keeps the tests quick


@pytest.fixture
def front(any_front: Front) -> Front:
    """Every test here runs over real sockets through each driver."""
    return any_front


def _run(front: Front, server: FakeMountsea, call: Any, **kwargs: Any) -> Any:
    return front.run(call, api_key=server.api_key, base_url=server.url, **kwargs)


def test_get_reads_both_services(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "p1", ["processing"])
    mountsea_server.add_task("xai", "x1", ["completed"], result={"video": "v.mp4"}, extra={"progress": 1.0})
    producer = _run(front, mountsea_server, lambda c: c.producer.tasks.get("p1"))
    xai = _run(front, mountsea_server, lambda c: c.xai.tasks.get("x1"))
    assert (producer.service, producer.status) == ("producer", mountsea.TaskStatus.PROCESSING)
    assert (xai.service, xai.result, xai.extra) == ("xai", {"video": "v.mp4"}, {"progress": 1.0})
    assert xai.created_at is not None
    assert xai.created_at.tzinfo is not None
    [first, second] = mountsea_server.requests
    assert (first.path, first.query, first.headers["authorization"]) == (
        "/producer/tasks",
        {"taskId": "p1"},
        "Bearer test-key",
    )
    assert (second.path, second.query) == ("/xai/tasks", {"taskId": "x1"})


def test_wait_walks_a_lifecycle_and_reports_each_change(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "song", ["pending", "pending", "processing", "processing", "completed"])
    seen: list[str] = []
    task = _run(
        front,
        mountsea_server,
        lambda c: c.producer.tasks.wait("song", poll=FAST, on_update=lambda t: seen.append(t.raw_status)),
    )
    assert task.succeeded
    assert seen == ["pending", "processing", "completed"]
    assert mountsea_server.request_count() == 5


@pytest.mark.parametrize(("faults", "max_retries", "outcome"), [(2, 2, "ok"), (3, 2, "error"), (1, 0, "error")])
def test_get_retries_exactly_max_retries_times(
    front: Front, mountsea_server: FakeMountsea, faults: int, max_retries: int, outcome: str
) -> None:
    mountsea_server.add_task("xai", "t", ["completed"])
    mountsea_server.inject(Fault.status(503, retry_after="0"), times=faults)
    if outcome == "ok":
        assert _run(front, mountsea_server, lambda c: c.xai.tasks.get("t"), max_retries=max_retries).succeeded
    else:
        with pytest.raises(mountsea.ServerError):
            _run(front, mountsea_server, lambda c: c.xai.tasks.get("t"), max_retries=max_retries)
    assert mountsea_server.request_count() == min(faults, max_retries + 1) + (outcome == "ok")


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault.status(520), mountsea.ServerError),
        (Fault.status(429, retry_after="0"), mountsea.RateLimitError),
        (Fault.drop(), mountsea.APIConnectionError),
        (Fault.reset_mid_body(), mountsea.APIConnectionError),
        (Fault.length_mismatch(), mountsea.APIConnectionError),
        (Fault.html(), mountsea.ResponseValidationError),
        (Fault.truncated(), mountsea.ResponseValidationError),
        (Fault.status(404), mountsea.NotFoundError),
    ],
    ids=["520", "429", "drop", "reset", "length-mismatch", "html", "truncated", "404"],
)
def test_each_fault_becomes_its_typed_error(
    front: Front, mountsea_server: FakeMountsea, fault: Fault, cls: type[mountsea.APIError]
) -> None:
    mountsea_server.add_task("producer", "t", ["completed"])
    mountsea_server.inject(fault)
    with pytest.raises(cls):
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"), max_retries=0)
    assert mountsea_server.request_count() == 1


@pytest.mark.parametrize(
    "fault", [Fault.drop(), Fault.reset_mid_body(), Fault.status(502)], ids=["drop", "reset", "502"]
)
def test_transient_faults_are_retried_transparently(front: Front, mountsea_server: FakeMountsea, fault: Fault) -> None:
    mountsea_server.add_task("producer", "t", ["completed"])
    mountsea_server.inject(fault)
    assert _run(front, mountsea_server, lambda c: c.producer.tasks.get("t")).succeeded
    assert mountsea_server.request_count() == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "0.4"}, 0.4), ({"retry-after-ms": "400"}, 0.4)],
    ids=["seconds", "ms"],
)
def test_retry_after_is_honoured(
    front: Front, mountsea_server: FakeMountsea, headers: dict[str, str], expected: float
) -> None:
    mountsea_server.add_task("producer", "t", ["completed"])
    mountsea_server.inject(Fault.status(429, headers=headers))
    _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"))
    first, second = mountsea_server.requests
    assert second.time - first.time >= expected


def test_a_retry_after_of_zero_does_not_make_the_retries_a_busy_loop(
    front: Front, mountsea_server: FakeMountsea
) -> None:
    mountsea_server.add_task("producer", "t", ["processing"])
    mountsea_server.inject(Fault.status(503, retry_after=0), times=1000)
    with pytest.raises(mountsea.WaitTimeoutError):
        _run(front, mountsea_server, lambda c: c.producer.tasks.wait("t", timeout=1.2), max_retries=100)
    assert mountsea_server.request_count() <= 3  # at 0, then backing off 0.5 s, then 1 s: not one per round trip


def test_read_timeout_becomes_api_timeout_error(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "t", ["completed"])
    mountsea_server.inject(Fault.delay(1.0))
    started = time.monotonic()
    with pytest.raises(mountsea.APITimeoutError):
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"), max_retries=0, timeout=0.2)
    assert time.monotonic() - started < 0.9


def test_wait_deadline_is_kept_on_a_task_that_never_ends(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("xai", "t", ["processing"])
    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        _run(front, mountsea_server, lambda c: c.xai.tasks.wait("t", timeout=0.5, poll=0.1))
    assert time.monotonic() - started < 0.5 + 0.25
    assert caught.value.task is not None
    assert caught.value.task.raw_status == "processing"
    assert isinstance(caught.value, TimeoutError)


def test_wait_deadline_cuts_a_slow_request(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("xai", "t", ["processing"])
    mountsea_server.inject(Fault.delay(3.0), times=5)
    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError):
        _run(front, mountsea_server, lambda c: c.xai.tasks.wait("t", timeout=0.6, poll=FAST))
    assert time.monotonic() - started < 0.6 + 0.25


@pytest.mark.parametrize("method", ["wait", "as_completed", "wait_all"])
def test_the_deadline_cuts_an_answer_trickled_a_byte_at_a_time(
    front: Front, mountsea_server: FakeMountsea, method: str
) -> None:
    # Each byte comes well within any read timeout; only a deadline on the whole request holds.
    mountsea_server.add_task("xai", "t", ["completed"])
    mountsea_server.inject(Fault.trickle(0.02))  # ~300 bytes: 6 s for the whole answer
    refs = [mountsea.TaskRef("xai", "t")]

    def call() -> object:
        if method == "wait":
            return _run(front, mountsea_server, lambda c: c.xai.tasks.wait("t", timeout=0.6, poll=FAST))
        return _batch(front, mountsea_server, method, refs, poll=FAST, timeout=0.6)

    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        call()
    assert time.monotonic() - started < 0.6 + 0.25
    assert mountsea_server.request_count() == 1
    if method != "wait":
        assert caught.value.pending == [mountsea.TaskRef("xai", "t")]


def test_wait_deadline_caps_retry_after(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "t", ["processing"])
    mountsea_server.inject(Fault.status(429, retry_after="30"))
    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError):
        _run(front, mountsea_server, lambda c: c.producer.tasks.wait("t", timeout=1.0))
    assert time.monotonic() - started < 1.0
    assert mountsea_server.request_count() == 1


def test_wait_survives_drops_and_5xx_until_done(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "t", ["processing", "completed"])
    mountsea_server.inject(Fault.drop())
    mountsea_server.inject(Fault.status(500, retry_after="0"), times=3)
    task = _run(front, mountsea_server, lambda c: c.producer.tasks.wait("t", poll=FAST), max_retries=0)
    assert task.succeeded
    assert mountsea_server.request_count() == 6


def test_connection_refused(front: Front) -> None:
    with FakeMountsea() as server:
        url = server.url
    with pytest.raises(mountsea.APIConnectionError):
        front.run(lambda c: c.producer.tasks.get("t"), api_key="k", base_url=url, max_retries=0)


def test_same_origin_redirects_are_followed_with_the_key(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "t2", ["completed"])
    mountsea_server.inject(Fault.redirect("/producer/tasks?taskId=t2"))
    task = _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"))
    assert task.id == "t2"
    assert [r.headers.get("authorization") for r in mountsea_server.requests] == ["Bearer test-key"] * 2


def test_cross_origin_redirects_do_not_carry_the_key(front: Front, mountsea_server: FakeMountsea) -> None:
    with FakeMountsea(api_key="other") as elsewhere:
        mountsea_server.inject(Fault.redirect(f"{elsewhere.url}/producer/tasks?taskId=t"))
        with pytest.raises(mountsea.AuthenticationError):
            _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"))
        [request] = elsewhere.requests
    assert "authorization" not in request.headers


def test_redirect_loops_end_without_retries(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.inject(Fault.redirect("/producer/tasks?taskId=t"), times=50)
    with pytest.raises(mountsea.APIError, match="redirect"):
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"))
    assert mountsea_server.request_count() == 6  # the first request and MAX_REDIRECTS more


@pytest.mark.parametrize("location", ["http://[::1", "http://127.0.0.1:99999/x", "ftp://127.0.0.1/x", "mailto:a@b"])
def test_a_redirect_to_an_unusable_url_is_a_connection_error(
    front: Front, mountsea_server: FakeMountsea, location: str
) -> None:
    mountsea_server.inject(Fault.redirect(location), times=10)
    with pytest.raises(mountsea.APIConnectionError) as caught:
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"), max_retries=0)
    assert "Bearer" not in str(caught.value)
    assert mountsea_server.request_count() == 1


def test_a_host_name_no_resolver_can_encode_is_a_connection_error(front: Front, mountsea_server: FakeMountsea) -> None:
    with pytest.raises(mountsea.APIConnectionError):  # an empty label: IDNA refuses it
        front.run(lambda c: c.producer.tasks.get("t"), api_key="k", base_url="http://a..b", max_retries=0)
    mountsea_server.inject(Fault.redirect("http://xn--a.test/x"), times=10)  # punycode that decodes to nothing valid
    with pytest.raises(mountsea.APIConnectionError):
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"), max_retries=0)


def test_a_body_compressed_though_not_asked_for_is_decoded(front: Front, mountsea_server: FakeMountsea) -> None:
    body = json.dumps({"taskId": "t", "status": "completed", "result": {"url": "a.mp3"}}).encode()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    mountsea_server.inject(Fault.status(200, body=gzip.compress(body), headers=headers))
    task = _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"))
    assert (task.status, task.result) == (mountsea.TaskStatus.COMPLETED, {"url": "a.mp3"})
    mountsea_server.inject(Fault.status(200, body=body, headers=headers))  # says gzip, is not: a broken answer
    with pytest.raises(mountsea.APIConnectionError):
        _run(front, mountsea_server, lambda c: c.producer.tasks.get("t"), max_retries=0)


def _batch(front: Front, server: FakeMountsea, method: str, refs: list[Any], **kwargs: Any) -> list[mountsea.Task]:
    if method == "wait_all":
        return _run(front, server, lambda c: c.wait_all(refs, **kwargs))  # type: ignore[no-any-return]
    if front.is_sync:
        return _run(front, server, lambda c: list(c.as_completed(refs, **kwargs)))  # type: ignore[no-any-return]

    async def collect(c: mountsea.AsyncMountsea) -> list[mountsea.Task]:
        return [task async for task in c.as_completed(refs, **kwargs)]

    return _run(front, server, collect)  # type: ignore[no-any-return]


def test_as_completed_yields_in_completion_order_across_services(front: Front, mountsea_server: FakeMountsea) -> None:
    refs = []
    for i, service in enumerate(["producer", "xai"] * 3):
        # t5 finishes first, t0 last, 0.15 s apart: far more than a poll interval.
        mountsea_server.add_task(service, f"t{i}", ["processing", "completed"], step_seconds=0.15 * (6 - i))
        refs.append(mountsea.TaskRef(service, f"t{i}"))  # type: ignore[arg-type]
    tasks = _batch(front, mountsea_server, "as_completed", refs, poll=FAST, max_concurrency=6)
    assert [t.id for t in tasks] == ["t5", "t4", "t3", "t2", "t1", "t0"]


def test_wait_all_returns_input_order_and_failed_tasks(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "a", ["processing", "processing", "completed"])
    mountsea_server.add_task("xai", "b", ["failed"], error_message="nope")
    refs = [mountsea.TaskRef("producer", "a"), mountsea.TaskRef("xai", "b")]
    tasks = _batch(front, mountsea_server, "wait_all", refs, poll=FAST)
    assert [(t.id, t.raw_status) for t in tasks] == [("a", "completed"), ("b", "failed")]


def test_the_concurrency_cap_is_kept_on_the_server(front: Front, mountsea_server: FakeMountsea) -> None:
    refs = []
    for i in range(20):
        mountsea_server.add_task("xai", f"t{i}", ["completed"])
        refs.append(mountsea.TaskRef("xai", f"t{i}"))
    mountsea_server.inject(Fault.delay(0.1), times=20)
    tasks = _batch(front, mountsea_server, "as_completed", refs, max_concurrency=5)
    assert len(tasks) == 20
    assert mountsea_server.peak_in_flight == 5


def test_a_rate_limit_pauses_the_whole_service(front: Front, mountsea_server: FakeMountsea) -> None:
    refs = []
    for i in range(6):
        mountsea_server.add_task("producer", f"t{i}", ["processing", "completed"])
        refs.append(mountsea.TaskRef("producer", f"t{i}"))
    mountsea_server.inject(Fault.status(429, retry_after="0.5"), task_id="t0")
    _batch(front, mountsea_server, "wait_all", refs, poll=FAST, max_concurrency=1)
    requests = mountsea_server.requests
    limited = next(r for r in requests if r.fault is not None)
    during = [r for r in requests if limited.time < r.time < limited.time + 0.5]
    assert during == []


def test_batch_deadline_hands_back_resumable_pending_tasks(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "quick", ["completed"])
    mountsea_server.add_task("xai", "slow", ["processing"])
    refs = [mountsea.TaskRef("producer", "quick"), mountsea.TaskRef("xai", "slow")]
    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        _batch(front, mountsea_server, "wait_all", refs, poll=0.1, timeout=0.5)
    assert time.monotonic() - started < 0.75
    assert [t.id for t in caught.value.finished] == ["quick"]
    [pending] = caught.value.pending
    assert (pending.service, pending.id) == ("xai", "slow")
    mountsea_server.add_task("xai", "slow", ["completed"])
    [resumed] = _batch(front, mountsea_server, "wait_all", caught.value.pending, poll=FAST)
    assert resumed.succeeded


def test_a_missing_task_does_not_lose_the_others(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "a", ["processing", "completed"])
    refs = [mountsea.TaskRef("producer", "a"), mountsea.TaskRef("producer", "ghost")]
    with pytest.raises(mountsea.BatchError) as caught:
        _batch(front, mountsea_server, "wait_all", refs, poll=FAST)
    assert [t.id for t in caught.value.finished] == ["a"]
    assert isinstance(caught.value.errors[mountsea.TaskRef("producer", "ghost")], mountsea.NotFoundError)


def test_per_service_shortcuts_take_plain_ids(front: Front, mountsea_server: FakeMountsea) -> None:
    for task_id in ["a", "b"]:
        mountsea_server.add_task("xai", task_id, ["completed"])
    tasks = _run(front, mountsea_server, lambda c: c.xai.tasks.wait_all(["b", "a"], poll=FAST))
    assert [t.id for t in tasks] == ["b", "a"]


def test_a_slow_on_update_does_not_push_a_request_past_the_deadline(
    front: Front, mountsea_server: FakeMountsea
) -> None:
    mountsea_server.add_task("producer", "p", ["processing"])
    started = time.monotonic()
    with pytest.raises(mountsea.WaitTimeoutError):
        _run(
            front,
            mountsea_server,
            lambda c: c.producer.tasks.wait("p", timeout=1.0, poll=0.5, on_update=lambda t: time.sleep(0.8)),
        )
    first, *_, last = mountsea_server.requests  # the deadline starts just before the first request
    assert last.time - first.time < 1.0
    assert time.monotonic() - started < 1.0 + 0.25


def test_a_retry_after_past_the_batch_deadline_still_pauses_the_service(
    front: Front, mountsea_server: FakeMountsea
) -> None:
    for task_id in ("a", "b"):
        mountsea_server.add_task("producer", task_id, ["processing"])
    mountsea_server.inject(Fault.status(429, retry_after="30"), task_id="a")
    refs = [mountsea.TaskRef("producer", "a"), mountsea.TaskRef("producer", "b")]
    with pytest.raises(mountsea.WaitTimeoutError):
        _batch(front, mountsea_server, "wait_all", refs, poll=FAST, timeout=0.6, max_concurrency=1)
    limited = next(r for r in mountsea_server.requests if r.fault is not None)
    assert [r for r in mountsea_server.requests if r.time > limited.time] == []


def test_as_completed_forgets_each_task_once_yielded(front: Front, mountsea_server: FakeMountsea) -> None:
    # A stream of any length holds only its unfinished tasks: what it yielded is the caller's.
    for i in range(8):
        mountsea_server.add_task("producer", f"t{i}", ["processing"] * i + ["completed"])
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(8)]
    seen: list[weakref.ref[mountsea.Task]] = []
    alive: list[int] = []

    def drop(task: mountsea.Task) -> None:
        seen.append(weakref.ref(task))
        gc.collect()
        alive.append(sum(ref() is not None for ref in seen[:-1]))

    if front.is_sync:
        _run(front, mountsea_server, lambda c: [drop(t) for t in c.as_completed(refs, poll=FAST, max_concurrency=1)])
    else:

        async def collect(c: mountsea.AsyncMountsea) -> None:
            async for task in c.as_completed(refs, poll=FAST, max_concurrency=1):
                drop(task)

        _run(front, mountsea_server, collect)
    assert len(seen) == 8
    # Of the tasks yielded earlier, at most the last answer handled is still referenced.
    assert max(alive) <= 1, alive


def test_a_finished_request_leaves_nothing_for_the_cyclic_gc(front: Front, mountsea_server: FakeMountsea) -> None:
    # httpx links a response and its stream both ways; unlinked, a batch's garbage never piles up.
    mountsea_server.add_task("producer", "t", ["processing"] * 5 + ["completed"])
    refs = [mountsea.TaskRef("producer", "t")]
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        [task] = _batch(front, mountsea_server, "wait_all", refs, poll=FAST)
        gc.collect()
        per_request = (httpx.Request, httpx.Response, httpx.SyncByteStream, httpx.AsyncByteStream)
        leftovers = [o for o in gc.garbage if isinstance(o, per_request)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert task.succeeded
    assert mountsea_server.request_count() == 6
    assert leftovers == []


def _workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "mountsea-worker"}


def test_sync_batches_share_worker_threads_until_close(mountsea_server: FakeMountsea) -> None:
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(12)]
    for ref in refs:
        mountsea_server.add_task("producer", ref.id, ["completed"])
    before = _workers()
    with mountsea.Mountsea(mountsea_server.api_key, base_url=mountsea_server.url) as client:
        mountsea_server.inject(Fault.delay(0.05), times=24)
        assert len(client.wait_all(refs, max_concurrency=4)) == 12
        first = _workers() - before
        assert 1 <= len(first) <= 4  # never more threads than requests in flight
        assert len(client.wait_all(refs, max_concurrency=4)) == 12
        assert _workers() - before == first  # the second batch ran on the same threads
    for thread in first:  # close() ends them
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert mountsea_server.peak_in_flight == 4


# Never closing it is the point: its httpx connection's socket is then closed by the GC, with a warning.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_client_never_closed_still_ends_its_worker_threads(mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "t", ["completed"])
    before = _workers()
    client = mountsea.Mountsea(mountsea_server.api_key, base_url=mountsea_server.url)
    assert client.producer.tasks.wait("t", timeout=5).succeeded  # a deadline: the request ran on a worker
    started = _workers() - before
    assert len(started) == 1
    collected = weakref.ref(client)
    del client
    for _ in range(100):  # the worker lets go of its job a moment after replying
        gc.collect()
        if collected() is None:
            break
        time.sleep(0.01)
    assert collected() is None  # an idle worker does not keep its client alive
    for thread in started:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_a_forked_child_gets_workers_of_its_own(mountsea_server: FakeMountsea) -> None:
    # The parent's worker threads do not survive a fork: the child must not queue work for them.
    mountsea_server.add_task("producer", "t", ["completed"])
    script = f"""
import os, sys, mountsea
client = mountsea.Mountsea({mountsea_server.api_key!r}, base_url={mountsea_server.url!r})
client.producer.tasks.wait("t", timeout=5)
pid = os.fork()
if pid == 0:
    ok = False
    try:
        ok = client.producer.tasks.wait("t", timeout=5).succeeded
        ok = ok and len(client.wait_all([mountsea.TaskRef("producer", "t")], timeout=5)) == 1
    finally:
        os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("method", ["wait", "wait_all"])
def test_a_deadline_centuries_away_is_accepted(front: Front, mountsea_server: FakeMountsea, method: str) -> None:
    mountsea_server.add_task("producer", "t", ["processing", "completed"])
    far = 1e12  # past what the OS's waits accept: ~292 years

    def call(c: Any) -> Any:
        if method == "wait":
            return c.producer.tasks.wait("t", timeout=far, poll=FAST)
        return c.wait_all([mountsea.TaskRef("producer", "t")], timeout=far, poll=FAST)

    result = _run(front, mountsea_server, call)
    assert (result if method == "wait" else result[0]).succeeded


def test_a_zero_timeout_wait_sends_one_request(front: Front, mountsea_server: FakeMountsea) -> None:
    mountsea_server.add_task("producer", "done", ["completed"])
    mountsea_server.add_task("producer", "busy", ["processing"])
    assert _run(front, mountsea_server, lambda c: c.producer.tasks.wait("done", timeout=0)).succeeded
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        _run(front, mountsea_server, lambda c: c.producer.tasks.wait("busy", timeout=0))
    assert caught.value.task is not None
    assert caught.value.task.raw_status == "processing"  # the Task it read, carried by the error
    assert mountsea_server.request_count() == 2


@pytest.mark.parametrize("method", ["as_completed", "wait_all"])
def test_a_zero_timeout_batch_polls_each_task_once(front: Front, mountsea_server: FakeMountsea, method: str) -> None:
    mountsea_server.add_task("producer", "done", ["completed"])
    mountsea_server.add_task("xai", "busy", ["processing"])
    refs = [mountsea.TaskRef("producer", "done"), mountsea.TaskRef("xai", "busy")]
    with pytest.raises(mountsea.WaitTimeoutError) as caught:
        _batch(front, mountsea_server, method, refs, timeout=0, max_concurrency=1)  # one round, in two waves
    [pending] = caught.value.pending
    assert isinstance(pending, mountsea.Task)
    assert (pending.id, pending.raw_status) == ("busy", "processing")
    assert [task.id for task in caught.value.finished] == (["done"] if method == "wait_all" else [])
    assert mountsea_server.request_count() == 2
