"""The fan-out benchmark, parent side: plan a batch, run it in a worker process, compare with the ideal.

A batch is ``tasks`` producer tasks whose lifecycles (pending, processing, completed, one
step per ``finish / 2`` seconds) end at times spread evenly over one poll interval. The
ideal client polls every task at t=0 and then every ``interval`` seconds, so it needs
``ceil(finish / interval) + 1`` requests per task (two, here) and is done one interval
after the last task finishes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fakeserver import ServerProcess, TaskSpec
from fanout_worker import WARMUP_PER_SLOT, Outcome

WORKER = Path(__file__).with_name("fanout_worker.py")
CONCURRENCY = 64
WARMUP_TASKS = WARMUP_PER_SLOT * CONCURRENCY  # the worker's warm-up batch, before its baseline
FIRST_FINISH = 0.3  # seconds: the earliest task finishes this long after it is scripted
HEADROOM = 1.5  # the poll interval is this many times the time one wave of polls takes
LAST_FINISH = 0.9  # the last task finishes this far into the first interval
STATUSES = ["pending", "processing", "completed"]


@dataclass(frozen=True)
class Capacity:
    """Requests per second one front end sustains at `CONCURRENCY` against the fake server."""

    front: str
    rate: float
    server_cpu: float  # cores the server process used meanwhile
    client_cpu: float  # cores the client process used meanwhile


@dataclass(frozen=True)
class Plan:
    """One batch: its front end, size, fixed poll interval and each task's finishing time."""

    capacity: Capacity  # probed just before, to size the interval
    tasks: int
    interval: float
    finishes: tuple[float, ...]  # seconds after each task is scripted

    @property
    def front(self) -> str:
        """``sync`` or ``async``."""
        return self.capacity.front

    @property
    def predicted_wall(self) -> float:
        """The ideal wall time, for budgeting."""
        return max(self.finishes) + self.interval


@dataclass(frozen=True)
class FanoutResult:
    """A run of a `Plan` and how it compares with the ideal schedule."""

    plan: Plan
    outcome: Outcome
    requests: int  # received by the server
    minimum: int  # what the ideal schedule needs
    ideal: float  # seconds: the last finish (relative to the first poll) plus one interval
    first_round: float  # seconds until every task had been polled once

    @property
    def wall_ratio(self) -> float:
        """Wall time over the ideal."""
        return self.outcome.wall / self.ideal

    @property
    def request_ratio(self) -> float:
        """Requests made over the minimum."""
        return self.requests / self.minimum

    @property
    def rss_growth_mb(self) -> float:
        """Peak RSS growth during the run, MB (10**6 bytes; /proc reports KiB as "kB")."""
        return (self.outcome.rss_peak_kb - self.outcome.rss_before_kb) * 1024 / 1e6

    @property
    def rss_mb_per_1000(self) -> float:
        """Peak RSS growth per 1,000 tasks, MB."""
        return self.rss_growth_mb / (self.plan.tasks / 1000)

    @property
    def cpu_ms_per_request(self) -> float:
        """Client CPU time per request, milliseconds."""
        return self.outcome.cpu / self.requests * 1000


def plan(tasks: int, capacity: Capacity) -> Plan:
    """A batch the client and the fake server keep up with.

    One wave (every task polled once) takes about ``tasks / capacity.rate`` seconds; the
    interval is `HEADROOM` times that (rounded up to half a second), so a wave ends before
    the next begins even if the machine slows down. Task ``i`` is polled first about
    ``i / tasks`` of the way through the first wave and finishes that far into the first
    interval, later than its first poll: the ideal schedule needs two polls per task.
    """
    wave = tasks / capacity.rate
    interval = max(1.0, math.ceil(2 * HEADROOM * wave) / 2)
    step = (LAST_FINISH * interval - FIRST_FINISH) / max(tasks - 1, 1)
    return Plan(capacity, tasks, interval, tuple(FIRST_FINISH + i * step for i in range(tasks)))


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class _WorkerRun:
    outcome: Outcome
    added_from: float  # monotonic time the server started scripting the tasks
    added_to: float  # ... and finished
    server_cpu: float  # CPU seconds the server used while the worker ran


def _run_worker(
    server: ServerProcess, front: str, specs: list[TaskSpec], interval: float, timeout: float
) -> _WorkerRun:
    """Script ``specs`` and poll them from a fresh worker process, after its warm-up batch."""
    server.reset()
    server.add([("producer", f"w{i}", ["completed"], None) for i in range(WARMUP_TASKS)])
    # The worker's own deadline ends a stuck batch a little before the parent gives up on it.
    args = [front, server.url, server.api_key, str(len(specs)), str(interval), str(CONCURRENCY), str(timeout - 10)]
    with subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdin is not None
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "READY":
                msg = f"the fan-out worker did not start (exit code {worker.wait()})"
                raise RuntimeError(msg)
            server.reset()  # the warm-up's tasks and requests are not the batch's
            added_from, added_to = server.add(specs)
            server_cpu = _cpu_seconds(server.pid)
            out, _ = worker.communicate("go\n", timeout=timeout)
            server_cpu = _cpu_seconds(server.pid) - server_cpu
        finally:
            if worker.poll() is None:
                worker.kill()
    if worker.returncode:
        msg = f"the fan-out worker failed with exit code {worker.returncode}"
        raise RuntimeError(msg)
    return _WorkerRun(Outcome(**json.loads(out)), added_from, added_to, server_cpu)


def capacity(server: ServerProcess, front: str, tasks: int) -> Capacity:
    """Poll ``tasks`` already-completed tasks once each, as fast as the front end goes."""
    specs: list[TaskSpec] = [("producer", f"f{i}", ["completed"], None) for i in range(tasks)]
    done = _run_worker(server, front, specs, 1.0, timeout=300)
    if server.count() != tasks:
        msg = f"capacity probe: expected {tasks} requests, the server saw {server.count()}"
        raise RuntimeError(msg)
    wall = done.outcome.wall
    return Capacity(front, tasks / wall, done.server_cpu / wall, done.outcome.cpu / wall)


def run(server: ServerProcess, batch: Plan) -> FanoutResult:
    """Run ``batch`` and compare it with the ideal schedule."""
    specs: list[TaskSpec] = [("producer", f"f{i}", STATUSES, finish / 2) for i, finish in enumerate(batch.finishes)]
    done = _run_worker(server, batch.front, specs, batch.interval, timeout=3 * batch.predicted_wall + 60)
    outcome = done.outcome
    if outcome.finished != batch.tasks or outcome.succeeded != batch.tasks:
        msg = f"{batch.front} fan-out: {outcome.succeeded} of {batch.tasks} tasks completed"
        raise RuntimeError(msg)
    # Task i was scripted at about added_from + i * spread: its finish, seen from the first poll.
    spread = (done.added_to - done.added_from) / max(batch.tasks - 1, 1)
    finishes = [done.added_from + i * spread + f - outcome.t0 for i, f in enumerate(batch.finishes)]
    minimum = sum(math.ceil(f / batch.interval) + 1 if f > 0 else 1 for f in finishes)
    first_round = server.first_round_end() - outcome.t0
    return FanoutResult(batch, outcome, server.count(), minimum, max(finishes) + batch.interval, first_round)
