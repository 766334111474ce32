"""A bounded soak: many tasks through ``as_completed`` against a FakeMountsea that misbehaves ~5 % of the time.

``MOUNTSEA_SOAK_TASKS`` tasks (500 by default; ``make soak`` runs 10,000) go through one long-lived
client in `ROUNDS` batches, each within a fixed time budget (the batch ``timeout``). A seeded RNG
picks ~5 % of the tasks and injects one fault in front of each: 503 or 429 with ``Retry-After: 0``,
a 500 without it, a dropped connection, a reset mid-body, a short body (Content-Length mismatch),
an HTML 502 from a proxy, or a truncated JSON body. The last is not transient: those tasks come
back in a `BatchError` and are passed in again, as a caller would.

Checked, for both front ends: every task's final state is delivered exactly once and none is lost;
every injected fault was served; the batch never runs past its budget; and once the client is
closed and the server stopped, no file descriptor, no thread and no memory is left behind (RSS
may grow while the first round warms up, then stays flat). The figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mountsea
from mountsea.testing import FakeMountsea, Fault
from tests.helpers import Front

TASKS = int(os.environ.get("MOUNTSEA_SOAK_TASKS", "500"))
ROUNDS = 5  # batches through the same client: memory must not grow from one to the next
FAULT_RATE = 0.05
SEED = 8  # the RNG that picks tasks, scripts and faults
POLL = mountsea.PollPolicy.fixed(0.01)
BUDGET = 15.0 + TASKS / ROUNDS * 0.02  # seconds a round's batch may take (its timeout): 17 s for 100 tasks
RSS_GROWTH_LIMIT = 16 * 2**20 + TASKS * 1024  # bytes the rounds after the first may add: 16.5 MB at 500 tasks
GRACE = 5.0  # seconds for worker threads to end once a batch is over
FAULTS: dict[str, Callable[[], Fault]] = {
    "503-retry-after-0": lambda: Fault.status(503, retry_after="0"),
    "429-retry-after-0": lambda: Fault.status(429, retry_after="0"),
    "500": lambda: Fault.status(500),
    "drop": Fault.drop,
    "reset-mid-body": Fault.reset_mid_body,
    "length-mismatch": Fault.length_mismatch,
    "html-502": lambda: Fault.html(502),
    "truncated": Fault.truncated,  # not transient: a BatchError, then the task is passed in again
}


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    msg = "no VmRSS in /proc/self/status"
    raise AssertionError(msg)


def _settle(condition: Callable[[], bool]) -> bool:
    """Wait up to GRACE seconds for ``condition``."""
    deadline = time.monotonic() + GRACE
    while not condition():
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.02)
    return True


def _script(server: FakeMountsea, rng: random.Random, count: int, round_no: int) -> dict[mountsea.TaskRef, str]:
    """Add ``count`` tasks, inject faults in front of ~5 % of them; the final status of each."""
    finals: dict[mountsea.TaskRef, str] = {}
    for i in range(count):
        service = rng.choice(["producer", "xai"])
        task_id = f"r{round_no}-t{i}"
        final = "failed" if rng.random() < 0.1 else "completed"
        statuses = [*["processing"] * rng.randint(0, 2), final]
        server.add_task(service, task_id, statuses, error_message="no luck" if final == "failed" else None)
        finals[mountsea.TaskRef(service, task_id)] = final  # type: ignore[arg-type]
    return finals


def _inject(server: FakeMountsea, rng: random.Random, refs: list[mountsea.TaskRef]) -> dict[mountsea.TaskRef, str]:
    faulty = {ref: rng.choice(sorted(FAULTS)) for ref in refs if rng.random() < FAULT_RATE}
    for ref, name in faulty.items():
        server.inject(FAULTS[name](), service=ref.service, task_id=ref.id)
    return faulty


def _drain_sync(client: mountsea.Mountsea, refs: list[mountsea.TaskRef], out: list[mountsea.Task]) -> None:
    for task in client.as_completed(refs, timeout=BUDGET, poll=POLL):
        out.append(task)


async def _drain_async(client: mountsea.AsyncMountsea, refs: list[mountsea.TaskRef], out: list[mountsea.Task]) -> None:
    async for task in client.as_completed(refs, timeout=BUDGET, poll=POLL):
        out.append(task)


class _Runner:
    """One long-lived client of either front end, driving batches to the end."""

    def __init__(self, front: Front, server: FakeMountsea) -> None:
        self.front = front
        self.loop = asyncio.new_event_loop() if front.kind == "async" else None
        self.client: Any = front.client(api_key=server.api_key, base_url=server.url)

    def batch(self, refs: list[mountsea.TaskRef]) -> tuple[list[mountsea.Task], mountsea.MountseaError | None]:
        out: list[mountsea.Task] = []
        try:
            if self.loop is None:
                _drain_sync(self.client, refs, out)
            else:
                self.loop.run_until_complete(_drain_async(self.client, refs, out))
        except mountsea.MountseaError as exc:
            return out, exc
        return out, None

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


@pytest.fixture
def baseline() -> tuple[int, int]:
    """Open file descriptors and live threads before the soak starts anything."""
    gc.collect()
    return _fds(), threading.active_count()


def test_soak(front: Front, baseline: tuple[int, int]) -> None:
    fds_before, threads_before = baseline
    rng = random.Random(SEED)
    per_round = max(1, TASKS // ROUNDS)
    delivered: collections.Counter[mountsea.TaskRef] = collections.Counter()
    injected: collections.Counter[str] = collections.Counter()
    rss: list[int] = []
    requests = resumed = 0
    started = time.monotonic()
    with FakeMountsea() as server:
        runner = _Runner(front, server)
        try:
            for round_no in range(ROUNDS):
                server.reset()
                finals = _script(server, rng, per_round, round_no)
                refs = list(finals)
                faulty = _inject(server, rng, refs)
                injected.update(faulty.values())

                round_started = time.monotonic()
                tasks, error = runner.batch(refs)
                assert time.monotonic() - round_started < BUDGET + 1.0
                # Only the tasks whose body came back truncated could not be read; nothing else is lost.
                unreadable = {ref for ref, name in faulty.items() if name == "truncated"}
                if unreadable:
                    assert isinstance(error, mountsea.BatchError), repr(error)
                    assert set(error.errors) == unreadable
                    assert all(isinstance(e, mountsea.ResponseValidationError) for e in error.errors.values())
                    assert error.finished == []  # as_completed yielded them already
                    again, error = runner.batch(sorted(unreadable, key=lambda r: r.id))
                    resumed += len(again)
                    tasks += again
                assert error is None, repr(error)

                delivered.update(task.ref for task in tasks)
                assert {task.ref: task.raw_status for task in tasks} == finals
                assert all(task.done for task in tasks)
                served = collections.Counter(r.fault for r in server.requests if r.fault is not None)
                assert sum(served.values()) == len(faulty), "an injected fault was never served"
                requests += len(server.requests)
                gc.collect()
                rss.append(_rss())
        finally:
            runner.close()
    elapsed = time.monotonic() - started

    lost = per_round * ROUNDS - len(delivered)
    doubled = sum(1 for count in delivered.values() if count > 1)
    assert (lost, doubled) == (0, 0)
    assert _settle(lambda: threading.active_count() <= threads_before), [t.name for t in threading.enumerate()]
    assert _settle(lambda: _fds() <= fds_before), f"{_fds()} file descriptors open, {fds_before} before"
    growth = max(rss[1:], default=rss[0]) - rss[0]
    print(
        f"\nsoak[{front.kind}]: {len(delivered)} tasks in {ROUNDS} rounds, {requests} requests, "
        f"{sum(injected.values())} faults injected ({dict(sorted(injected.items()))}), {resumed} resumed after "
        f"a BatchError, 0 lost, 0 delivered twice, {elapsed:.1f} s; fds {fds_before} -> {_fds()}, "
        f"threads {threads_before} -> {threading.active_count()}; RSS after each round (MB): "
        f"{[round(r / 2**20, 1) for r in rss]}, growth after the first {growth / 2**20:.1f} MB"
    )
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MB after the first round"
    assert sum(injected.values()) > 0
