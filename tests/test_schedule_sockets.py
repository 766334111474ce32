"""Where polls go and how fast requests leave, over real sockets, through both front ends.

One test per rule: the age read on the server's clock, learning from finished tasks,
``max_rate``, AIMD after 429s, and each advertised RateLimit form paced to before any 429.
The server is `FakeMountsea` with a clock of its own and, if asked, a rate limit it enforces.
Rates are small and windows short: every test here takes about a second or less.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import email.utils
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mountsea
from mountsea.testing import FakeMountsea, RecordedRequest
from mountsea.testing._http import _Handler  # its Date: the one thing FakeMountsea does not script
from tests.helpers import Front

FAST = mountsea.PollPolicy.fixed(0.05)
# Adaptive, on a fast curve until it has learnt: a short target latency, so that pauses stay short.
ADAPTIVE = mountsea.PollPolicy(initial=0.05, maximum=0.05, multiplier=1.0, jitter=0.0, latency=0.25)
FORMS = ["policy", "ratelimit", "older", "x-delta", "x-epoch"]


class Server(FakeMountsea):
    """`FakeMountsea` with its own clock (``skew`` s off ours: its ``Date`` and its tasks' times)
    and, with a ``quota``, a limit of that many requests per ``window`` seconds: fixed windows from
    the first request (from the epoch for ``x-epoch``: whole seconds, as its Date has), advertised
    in the headers of ``form``; or, without a form, a sliding window that nothing advertises. Past
    the limit it answers 429, with Retry-After: 0.
    """

    def __init__(self, *, skew: float = 0.0, quota: int = 0, window: float = 1.0, form: str | None = None) -> None:
        super().__init__()
        self.skew, self.quota, self.window, self.form = skew, quota, window, form
        self.limited: list[float] = []  # when 429s went out (monotonic, as RecordedRequest.time)
        self._accepted: list[float] = []
        self._used: dict[int, int] = {}  # fixed window -> requests accepted in it
        self._anchor: float | None = None  # where the fixed windows start, on the server's clock
        self._gate = threading.Lock()

    def _answer(self, request: RecordedRequest, n: int) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        code, headers, body = super()._answer(request, n)
        if self.skew and code == 200:
            body = json.dumps({k: _shift(k, v, self.skew) for k, v in json.loads(body).items()}).encode()
        if not self.quota:
            return code, headers, body
        with self._gate:
            now, clock = time.monotonic(), time.time() + self.skew
            if self.form is None:
                over, extra = sum(t > now - self.window for t in self._accepted) >= self.quota, {}
            else:
                if self._anchor is None:
                    self._anchor = 0.0 if self.form == "x-epoch" else clock
                slot = math.floor((clock - self._anchor) / self.window)
                used = self._used.get(slot, 0)
                over = used >= self.quota
                self._used[slot] = used + (not over)
                end = self._anchor + (slot + 1) * self.window
                extra = _advertise(self.form, self.quota, self.window, self.quota - self._used[slot], end, clock)
            if over:
                self.limited.append(now)
                code, body = 429, b'{"statusCode": 429, "message": "Too Many Requests"}'
                extra["Retry-After"] = "0"
            else:
                self._accepted.append(now)
        return code, (*headers, *extra.items()), body


def _advertise(form: str, quota: int, window: float, remaining: int, end: float, clock: float) -> dict[str, str]:
    """The headers of ``form`` for a window of ``quota`` requests in ``window`` s ending at ``end``."""
    reset = f"{end - clock:.3f}"
    if form == "policy":
        return {"RateLimit-Policy": f'"default";q={quota};w={window:g}'}
    if form == "ratelimit":
        return {"RateLimit": f'"default";r={remaining};t={reset}'}
    prefix = "RateLimit-" if form == "older" else "X-RateLimit-"
    if form == "x-epoch":
        reset = f"{end:.0f}"  # a Unix time
    return {f"{prefix}Limit": str(quota), f"{prefix}Remaining": str(remaining), f"{prefix}Reset": reset}


def _shift(key: str, value: Any, skew: float) -> Any:
    if key not in ("createdAt", "finishedAt") or not isinstance(value, str):
        return value
    return _iso(datetime.datetime.fromisoformat(value).timestamp() + skew)


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def start_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Starts `Server`s (their ``Date`` on their own clock), stopped after the test."""
    started: list[Server] = []

    def date(handler: _Handler, timestamp: float | None = None) -> str:
        skew = getattr(handler.server.fake, "skew", 0.0)
        return email.utils.formatdate((time.time() if timestamp is None else timestamp) + skew, usegmt=True)

    monkeypatch.setattr(_Handler, "date_time_string", date)

    def start(**kwargs: Any) -> Server:
        started.append(Server(**kwargs))
        started[-1].start()
        return started[-1]

    yield start
    for each in started:
        each.stop()


def _in_turn(front: Front, server: Server, *steps: Callable[[Any], Any], **kwargs: Any) -> list[Any]:
    """Run ``steps`` (client -> result, or -> awaitable for the async front end) one after another on one client."""
    if front.is_sync:
        return front.run(lambda c: [step(c) for step in steps], api_key=server.api_key, base_url=server.url, **kwargs)  # type: ignore[no-any-return]

    async def main(c: mountsea.AsyncMountsea) -> list[Any]:
        return [await step(c) for step in steps]

    return front.run(main, api_key=server.api_key, base_url=server.url, **kwargs)  # type: ignore[no-any-return]


def _together(front: Front, server: Server, *steps: Callable[[Any], Any], **kwargs: Any) -> list[Any]:
    """Run ``steps`` at once on one client: on threads, or as tasks of one loop."""
    if front.is_sync:

        def main(c: mountsea.Mountsea) -> list[Any]:
            with concurrent.futures.ThreadPoolExecutor(len(steps)) as pool:
                return [f.result() for f in [pool.submit(step, c) for step in steps]]

        return front.run(main, api_key=server.api_key, base_url=server.url, **kwargs)  # type: ignore[no-any-return]

    async def gather(c: mountsea.AsyncMountsea) -> list[Any]:
        return list(await asyncio.gather(*(step(c) for step in steps)))

    return front.run(gather, api_key=server.api_key, base_url=server.url, **kwargs)  # type: ignore[no-any-return]


def _finished(
    server: Server, count: int, took: Callable[[int], float], service: str = "producer"
) -> list[mountsea.TaskRef]:
    """``count`` tasks already finished, task ``i`` after ``took(i)`` seconds: what a client learns from."""
    refs = []
    for i in range(count):
        created = time.time() + server.skew - 60
        payload = {
            "taskId": f"done{i}",
            "status": "completed",
            "createdAt": _iso(created),
            "finishedAt": _iso(created + took(i)),
        }
        server.set_payload(service, f"done{i}", {**payload, "result": {"url": "u"}})
        refs.append(mountsea.TaskRef(service, f"done{i}"))
    return refs


def _polls(server: Server, task_id: str) -> list[float]:
    return [r.time for r in server.requests if r.task_id == task_id]


def _learn_then_wait(front: Front, server: Server, task_id: str) -> mountsea.Task:
    """Learn 20 durations of 0.5-0.7 s, then wait for a task that takes 0.5 s."""
    learnt = _finished(server, 20, lambda i: 0.5 + 0.2 * i / 19)

    def wait(c: Any) -> Any:
        server.add_task("producer", task_id, ["processing", "completed"], step_seconds=0.5)
        return c.producer.tasks.wait(task_id, poll=ADAPTIVE, timeout=10)

    return _in_turn(front, server, lambda c: c.wait_all(learnt, poll=ADAPTIVE), wait)[-1]  # type: ignore[no-any-return]


def test_the_age_is_read_on_the_servers_clock_however_far_from_ours(
    front: Front, start_server: Callable[..., Server]
) -> None:
    # Five hours behind: read on our clock, the task would look five hours old, older than any
    # learnt, and be polled on the fast curve; read on the server's, it is new: no poll before 0.5 s.
    behind = start_server(skew=-5 * 3600.0)
    assert _learn_then_wait(front, behind, "t").succeeded
    first, *later = _polls(behind, "t")
    assert later
    assert later[0] - first >= 0.85 * 0.5
    assert len(later) <= 3


def test_after_finished_tasks_a_wait_polls_fewer_times_than_the_old_curve(
    front: Front, start_server: Callable[..., Server]
) -> None:
    live = start_server()
    live.add_task("producer", "before", ["processing", "completed"], step_seconds=0.5)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two clients at once: one learns, one does not
        fresh = pool.submit(_in_turn, front, live, lambda c: c.producer.tasks.wait("before", poll=ADAPTIVE, timeout=10))
        learnt = pool.submit(_learn_then_wait, front, live, "after")
        assert fresh.result()[0].succeeded
        assert learnt.result().succeeded
    before, after = _polls(live, "before"), _polls(live, "after")
    assert len(before) >= 8  # every 50 ms for 0.5 s
    assert 2 <= len(after) <= len(before) // 3


def test_max_rate_bounds_every_call_and_service_together(front: Front, start_server: Callable[..., Server]) -> None:
    fake = start_server()
    producer = _finished(fake, 11, lambda i: 1.0)
    xai = _finished(fake, 11, lambda i: 1.0, service="xai")
    results = _together(front, fake, lambda c: c.wait_all(producer), lambda c: c.wait_all(xai), max_rate=20)
    assert [len(tasks) for tasks in results] == [11, 11]
    times = [r.time for r in fake.requests]
    assert len(times) == 22
    busiest = max(sum(t <= u < t + 1.0 for u in times) for t in times)
    assert busiest <= 20 + 1


def test_429s_past_a_rate_lower_the_clients_rate(front: Front, start_server: Callable[..., Server]) -> None:
    # 10 requests in any second, and Retry-After: 0: only the client's own rate can slow it down.
    fake = start_server(quota=10, window=1.0)
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(8)]
    for ref in refs:
        fake.add_task("producer", ref.id, ["processing"])
    with pytest.raises(mountsea.WaitTimeoutError):  # 8 tasks polled every 50 ms: 160 requests a second
        _in_turn(front, fake, lambda c: c.wait_all(refs, poll=FAST, timeout=0.5))
    start = fake.requests[0].time
    assert fake.limited
    assert fake.limited[0] < start + 0.25  # refused at once
    late = sum(r.time >= start + 0.25 for r in fake.requests)
    assert late <= 10 * 0.25 + 1  # within a quarter of a second, it asks no faster than the server allows


@pytest.mark.parametrize("form", FORMS)
def test_an_advertised_limit_is_paced_to_before_any_429(
    front: Front, start_server: Callable[..., Server], form: str
) -> None:
    # 2 requests in 0.1 s (1 a second with a reset as a Unix time: the Date it is read against has whole seconds).
    quota, count = (2, 3) if form != "x-epoch" else (1, 1)
    fake = start_server(quota=quota, window=0.1 if form != "x-epoch" else 1.0, form=form)
    fake.add_task("producer", "first", ["completed"])
    refs = _finished(fake, count, lambda i: 1.0)
    tasks = _in_turn(front, fake, lambda c: c.producer.tasks.get("first"), lambda c: c.wait_all(refs, timeout=5))
    assert len(tasks[-1]) == count
    assert fake.limited == []  # unpaced, every request past the quota would be refused
    assert len(fake.requests) == 1 + count
