"""The fault matrix: every fault FakeMountsea can serve, over real sockets, through every entry point.

One table, `ROWS`, says for each fault what each entry point must give (the Task, or the exact
error class) and exactly how many requests the server must receive. Parametrised tests run it
through ``get``, ``wait`` and ``as_completed`` of both front ends, and a representative subset
through the command line (``python -m mountsea get/wait``) as a subprocess.

The task ``t`` always completes at once; the faults are injected in front of it. Entry points:

* ``get``: ``max_retries=2`` (the default), so a fault served 3 times is fatal to it;
* ``wait``: ``timeout=row.deadline``, polling every 20 ms;
* ``as_completed``: the one task, same deadline and polling (a task that cannot be read ends in a
  `BatchError`; 401 and 403 stop the batch with their own error).

Real sleeps stay small: Retry-After values are 0 to 0.3 s (one HTTP date up to 1.3 s ahead), slow
faults meet a 0.5 s client timeout, and the backoff after a fault without Retry-After starts at
20 ms instead of 0.5 s (`fast_backoff`; the backoff law itself is tested in test_retry.py). The
command line runs with the real backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import mountsea
import mountsea._retry
from mountsea.testing import FakeMountsea, Fault
from tests.helpers import Front

FAST = 0.02  # the poll interval of wait and as_completed
DEADLINE = 10.0  # wait / as_completed deadline for rows that end well before it
SLOW = 2.0  # how long a slow fault stalls ...
CLIENT_TIMEOUT = 0.5  # ... against this client timeout (seconds per request phase)
REF = mountsea.TaskRef("producer", "t")


@dataclass(frozen=True)
class Outcome:
    """What an entry point must give: ``result`` "ok" (the completed task) or an exact error class.

    ``inner``: for a `BatchError`, the exact class of the task's error. ``requests``: how many
    requests the server must receive.
    """

    result: str | type[BaseException]
    requests: int
    inner: type[BaseException] | None = None


@pytest.fixture(params=["sync", "async", "aiohttp"])
def front(request: pytest.FixtureRequest) -> Front:
    """Every fault over real sockets through each driver of httpx and aiohttp (the sync client's aiohttp
    sender runs the same driver code from a loop thread; test_sockets covers it)."""
    return Front(request.param)


def ok(requests: int) -> Outcome:
    return Outcome("ok", requests)


def err(cls: type[BaseException], requests: int) -> Outcome:
    return Outcome(cls, requests)


def unread(cls: type[BaseException], requests: int) -> Outcome:
    """as_completed: the task could not be read, reported in a BatchError once the batch is done."""
    return Outcome(mountsea.BatchError, requests, inner=cls)


_FUTURE_DATES: list[int] = []  # the Unix times `_future_date` named, newest last


def _future_date() -> Fault:
    """A 429 whose Retry-After is an HTTP date 0.3 to 1.3 s ahead (dates count whole seconds)."""
    _FUTURE_DATES.append(math.ceil(time.time() + 0.3))
    return Fault.status(429, retry_after=email.utils.formatdate(_FUTURE_DATES[-1], usegmt=True))


@dataclass(frozen=True)
class Row:
    """One fault and what every entry point must make of it."""

    name: str
    faults: tuple[tuple[Fault | Callable[[], Fault], int], ...]  # (fault, times), injected in order
    get: Outcome
    wait: Outcome
    as_completed: Outcome
    client: dict[str, Any] = field(default_factory=dict)  # extra Mountsea(...) arguments
    deadline: float = DEADLINE
    min_gap: float = 0.0  # seconds the client must wait between the first two requests
    after_date: bool = False  # the second request must come after the Retry-After date
    cli: bool = False  # also run through the command line
    refused: bool = False  # no server at all: nothing listens on the port

    def inject(self, server: FakeMountsea) -> None:
        for fault, times in self.faults:
            server.inject(fault if isinstance(fault, Fault) else fault(), times=times, task_id="t")


def once(name: str, fault: Fault | Callable[[], Fault], *, min_gap: float = 0.0, cli: bool = False, **kw: Any) -> Row:
    """A transient fault served once: every entry point retries it and reads the task the second time."""
    return Row(name, ((fault, 1),), ok(2), ok(2), ok(2), min_gap=min_gap, cli=cli, **kw)


def fatal(name: str, fault: Fault, cls: type[BaseException], *, cli: bool = False, requests: int = 1) -> Row:
    """A fault no retry can fix: every entry point ends with ``cls`` at once."""
    batch = err(cls, requests) if cls in (mountsea.AuthenticationError, mountsea.PermissionDeniedError) else None
    return Row(
        name,
        ((fault, 50),),
        err(cls, requests),
        err(cls, requests),
        batch or unread(cls, requests),
        cli=cli,
    )


SLOW_CLIENT = {"timeout": CLIENT_TIMEOUT}

ROWS = [
    # No answer at all.
    Row(
        "connection-refused",
        (),
        # A server never reached is said at once, not after the deadline (issue 12).
        err(mountsea.APIConnectionError, 0),
        err(mountsea.APIConnectionError, 0),
        err(mountsea.APIConnectionError, 0),
        deadline=0.5,
        refused=True,
        cli=True,
    ),
    once("drop", Fault.drop(), cli=True),
    once("reset-mid-body", Fault.reset_mid_body()),
    once("slow-headers", Fault.delay(SLOW), client=SLOW_CLIENT),
    once("slow-body", Fault.slow_body(SLOW), client=SLOW_CLIENT),
    once("content-length-mismatch", Fault.length_mismatch()),
    once("1xx-then-close", Fault.status(100)),  # h11 takes a 1xx as interim: no final answer comes
    # 429 with each form of Retry-After.
    once("429-retry-after-0", Fault.status(429, retry_after="0"), cli=True),
    once("429-retry-after-seconds", Fault.status(429, retry_after="0.3"), min_gap=0.3),
    once("429-retry-after-http-date", _future_date, after_date=True),
    once("429-retry-after-past-http-date", Fault.status(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")),
    once("429-retry-after-ms", Fault.status(429, headers={"retry-after-ms": "300"}), min_gap=0.3),
    once("429-retry-after-garbage", Fault.status(429, retry_after="soon, maybe")),
    once("429-no-retry-after", Fault.status(429)),
    # The 5xx family, standard and not.
    *[once(f"{code}", Fault.status(code, retry_after="0"), cli=code == 503) for code in (500, 502, 503, 504, 520, 599)],
    once("502-html-from-a-proxy", Fault.html(502)),
    # Transient faults that outlast get's retries (max_retries=2): wait and as_completed go on.
    Row(
        "503-three-times",
        ((Fault.status(503, retry_after="0"), 3),),
        err(mountsea.ServerError, 3),
        ok(4),
        ok(4),
        cli=True,
    ),
    Row("drop-three-times", ((Fault.drop(), 3),), err(mountsea.APIConnectionError, 3), ok(4), ok(4)),
    # Answers no retry can fix.
    fatal("400", Fault.status(400), mountsea.BadRequestError),
    fatal("401", Fault.status(401), mountsea.AuthenticationError, cli=True),
    fatal("403", Fault.status(403), mountsea.PermissionDeniedError),
    fatal("404", Fault.status(404), mountsea.NotFoundError, cli=True),
    fatal("300-without-location", Fault.status(300), mountsea.APIStatusError),
    fatal("200-html", Fault.html(200), mountsea.ResponseValidationError, cli=True),
    fatal("200-truncated-json", Fault.truncated(), mountsea.ResponseValidationError, cli=True),
    # The first request and MAX_REDIRECTS (5) more, then an APIError that is not retried.
    fatal("redirect-loop", Fault.redirect("/producer/tasks?taskId=t"), mountsea.APIError, cli=True, requests=6),
]
ENTRY_POINTS = ("get", "wait", "as_completed")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first backoff step after a fault without Retry-After: 20 ms instead of 0.5 s."""
    monkeypatch.setattr(mountsea._retry, "INITIAL_RETRY_DELAY", 0.02)


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[FakeMountsea]:
    with FakeMountsea() as fake:
        yield fake


@pytest.fixture
def server(_shared_server: FakeMountsea) -> FakeMountsea:
    """One server for the module, cleared for each test: the task ``t``, completed at once, and no faults."""
    _shared_server.reset()
    _shared_server.add_task("producer", "t", ["completed"])
    return _shared_server


def closed_port_url() -> str:
    with FakeMountsea() as gone:
        return gone.url  # nothing listens there once it is stopped


def entry_point(front: Front, entry: str, row: Row) -> Callable[[Any], Any]:
    if entry == "get":
        return lambda c: c.producer.tasks.get("t")
    if entry == "wait":
        return lambda c: c.producer.tasks.wait("t", timeout=row.deadline, poll=FAST)
    if front.is_sync:
        return lambda c: list(c.as_completed([REF], timeout=row.deadline, poll=FAST))

    async def collect(c: mountsea.AsyncMountsea) -> list[mountsea.Task]:
        return [task async for task in c.as_completed([REF], timeout=row.deadline, poll=FAST)]

    return collect


def call_entry(front: Front, entry: str, row: Row, base_url: str, api_key: str) -> Any:
    """Run ``entry`` through ``front``: the completed Task, or the exception raised."""
    try:
        result = front.run(entry_point(front, entry, row), api_key=api_key, base_url=base_url, **row.client)
    except Exception as exc:  # compared with the expected class below, raw ones included
        return exc
    return result[0] if isinstance(result, list) and len(result) == 1 else result


def check(outcome: Any, expected: Outcome) -> None:
    if expected.result == "ok":
        assert isinstance(outcome, mountsea.Task), f"expected the task, got {outcome!r}"
        assert (outcome.id, outcome.raw_status) == ("t", "completed")
        return
    assert type(outcome) is expected.result, f"expected {expected.result}, got {outcome!r}"
    if expected.inner is not None:
        assert isinstance(outcome, mountsea.BatchError)
        assert list(outcome.errors) == [REF]
        assert type(outcome.errors[REF]) is expected.inner, repr(outcome.errors[REF])
        assert outcome.finished == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_fault_matrix(front: Front, server: FakeMountsea, row: Row, entry: str) -> None:
    expected: Outcome = getattr(row, entry)
    row.inject(server)
    url = closed_port_url() if row.refused else server.url
    started = time.monotonic()
    outcome = call_entry(front, entry, row, url, server.api_key)
    elapsed = time.monotonic() - started
    check(outcome, expected)
    assert server.request_count() == expected.requests
    if entry != "get":
        assert elapsed < row.deadline + 0.5, f"{elapsed:.2f} s for a {row.deadline} s deadline"
    if row.min_gap:
        first, second = server.requests[:2]
        assert second.time - first.time >= row.min_gap
    if row.after_date:  # against the date itself: how long after the injection it is served does not matter
        second_at = server.requests[1].time + (time.time() - time.monotonic())
        assert second_at >= _FUTURE_DATES[-1] - 0.05, f"{_FUTURE_DATES[-1] - second_at:.2f} s before the date"


def test_the_matrix_covers_every_fault_kind() -> None:
    """Every kind of Fault FakeMountsea offers appears in the table, and so does every 5xx family member asked for."""
    kinds = {fault.kind for row in ROWS for fault, _ in row.faults if isinstance(fault, Fault)}
    assert kinds == {
        "status",
        "delay",
        "slow_body",
        "drop",
        "reset_mid_body",
        "html",
        "truncated",
        "length_mismatch",
        "redirect",
    }
    codes = {
        fault.code for row in ROWS for fault, _ in row.faults if isinstance(fault, Fault) and fault.kind == "status"
    }
    assert {500, 502, 503, 504, 520, 599} <= codes


# -- the command line ---------------------------------------------------------------------------

CLI_ROWS = [row for row in ROWS if row.cli]
EXIT_OK, EXIT_DEADLINE, EXIT_API = 0, 3, 4


def _exit_code(expected: Outcome) -> int:
    if expected.result == "ok":
        return EXIT_OK
    if expected.result is mountsea.WaitTimeoutError:
        return EXIT_DEADLINE
    return EXIT_API


@pytest.mark.parametrize("command", ["get", "wait"])
@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.name for row in CLI_ROWS])
def test_fault_matrix_through_the_cli(server: FakeMountsea, row: Row, command: str) -> None:
    # The command line reads one task with get(), and waits with as_completed().
    expected = row.get if command == "get" else row.as_completed
    row.inject(server)
    url = closed_port_url() if row.refused else server.url
    args = ["get", "producer", "t"] if command == "get" else ["wait", "producer", "t", "--poll", str(FAST)]
    if command == "wait":
        args += ["--timeout", str(row.deadline)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    env.update(MOUNTSEA_API_KEY=server.api_key, MOUNTSEA_BASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "mountsea", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == _exit_code(expected), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert server.request_count() == expected.requests
    if expected.result == "ok":
        assert "completed" in done.stdout
    else:
        assert done.stderr.startswith("mountsea: ")


def test_an_async_batch_cancelled_mid_fault_leaves_no_task_behind(server: FakeMountsea) -> None:
    """Closing an async as_completed mid-way (a consumer that stops early) leaves nothing running."""
    server.inject(Fault.delay(SLOW), task_id="t")
    server.add_task("producer", "u", ["completed"])

    async def main() -> int:
        async with mountsea.AsyncMountsea(server.api_key, base_url=server.url) as client:
            batch = client.as_completed([REF, mountsea.TaskRef("producer", "u")], poll=FAST)
            first = await anext(batch)
            assert first.id == "u"
            await batch.aclose()  # type: ignore[attr-defined]
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    started = time.monotonic()
    assert asyncio.run(main()) == 0
    assert time.monotonic() - started < SLOW
