"""One fan-out run, in its own process so that its RSS, CPU time and threads are the client's alone.

``python fanout_worker.py FRONT URL API_KEY TASKS INTERVAL CONCURRENCY TIMEOUT`` polls the tasks
``f0`` ... ``f<TASKS-1>`` of the producer service through ``as_completed``, with
``PollPolicy.fixed(INTERVAL)`` and a deadline of TIMEOUT seconds. It builds its client and refs,
warms up (one batch over ``WARMUP_PER_SLOT * CONCURRENCY`` already-completed tasks ``w0``,
``w1``..., so that the modules, connections and worker threads a first batch brings in are
there before the measurement), prints ``READY``, waits for a line on stdin (the parent scripts the tasks
meanwhile), runs, and prints one JSON line. It exits at once if stdin closes first (the parent
is gone).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import mountsea
from mountsea import PollPolicy, Task, TaskRef

# Enough to open every worker thread and connection once, and no more: a larger warm-up
# would leave freed memory behind for the measured batch to reuse, hiding its tasks' cost.
WARMUP_PER_SLOT = 2


@dataclass
class Outcome:
    """What one run measured; times are ``time.monotonic()`` seconds, memory is kB."""

    t0: float
    wall: float
    finished: int
    succeeded: int
    cpu: float
    rss_before_kb: int
    rss_peak_kb: int
    threads_before: int
    threads_peak: int
    warmup_rss_kb: int  # peak RSS growth of the warm-up batch: the cost of a first batch


def memory_kb() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in kB."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current RSS (Linux 4.0+), so the peak is this run's."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


class Probe:
    """Counts results and keeps the highest thread count seen while they arrive."""

    def __init__(self) -> None:
        self.finished = 0
        self.succeeded = 0
        self.threads_peak = threading.active_count()

    def sample(self, _: Task | None = None) -> None:
        """Called on each status change, in the loop that drives the batch."""
        self.threads_peak = max(self.threads_peak, threading.active_count())

    def result(self, task: Task) -> None:
        """Called for each task yielded by ``as_completed``."""
        self.finished += 1
        self.succeeded += task.succeeded
        self.sample()


class Run:
    """One worker's measurements, taken around the warm-up and the batch."""

    def __init__(self) -> None:
        self.probe = Probe()
        self.warmup_rss_kb = 0
        self.rss_before_kb = self.threads_before = 0
        self.cpu0 = self.t0 = 0.0

    def cold(self) -> None:
        """Before the warm-up batch."""
        gc.collect()
        reset_peak_rss()
        self.warmup_rss_kb = -memory_kb()["VmRSS"]

    def ready(self) -> None:
        """After the warm-up: tell the parent, wait for its go, take the baseline."""
        self.warmup_rss_kb += memory_kb()["VmHWM"]
        gc.collect()
        print("READY", flush=True)
        if not sys.stdin.readline():
            sys.exit("fanout_worker: stdin closed before the go")
        reset_peak_rss()
        self.rss_before_kb = memory_kb()["VmRSS"]
        self.threads_before = threading.active_count()
        self.cpu0 = time.process_time()
        self.t0 = time.monotonic()

    def outcome(self) -> Outcome:
        """After the batch."""
        return Outcome(
            t0=self.t0,
            wall=time.monotonic() - self.t0,
            finished=self.probe.finished,
            succeeded=self.probe.succeeded,
            cpu=time.process_time() - self.cpu0,
            rss_before_kb=self.rss_before_kb,
            rss_peak_kb=memory_kb()["VmHWM"],
            threads_before=self.threads_before,
            threads_peak=self.probe.threads_peak,
            warmup_rss_kb=self.warmup_rss_kb,
        )


def run(front: str, url: str, api_key: str, tasks: int, interval: float, concurrency: int, timeout: float) -> Outcome:
    """Set up, warm up, wait for the parent's go, poll every task to the end, and measure.

    The client exists, and has run one batch at full concurrency, before the baseline:
    its pool and connections, the modules a first request imports and the worker threads
    are costs of the client, paid once (reported as ``warmup_rss_kb``), not of the tasks.
    """
    refs = [TaskRef("producer", f"f{i}") for i in range(tasks)]
    warmup = [TaskRef("producer", f"w{i}") for i in range(WARMUP_PER_SLOT * concurrency)]
    options: dict[str, Any] = {"timeout": timeout, "max_concurrency": concurrency}
    policy = PollPolicy.fixed(interval)
    measure = Run()
    if front == "sync":
        with mountsea.Mountsea(api_key, base_url=url) as client:
            measure.cold()
            client.wait_all(warmup, **options)
            measure.ready()
            for task in client.as_completed(refs, poll=policy, on_update=measure.probe.sample, **options):
                measure.probe.result(task)
    elif front == "async":

        async def drive() -> None:  # one event loop for the warm-up and the batch: the pool is bound to it
            async with mountsea.AsyncMountsea(api_key, base_url=url) as client:
                measure.cold()
                await client.wait_all(warmup, **options)
                measure.ready()
                async for task in client.as_completed(refs, poll=policy, on_update=measure.probe.sample, **options):
                    measure.probe.result(task)

        asyncio.run(drive())
    else:
        msg = f"front must be 'sync' or 'async', not {front!r}"
        raise ValueError(msg)
    return measure.outcome()


def main(argv: list[str]) -> None:
    """Parse the positional arguments, run, print the outcome as JSON."""
    front, url, api_key, tasks, interval, concurrency, timeout = argv
    outcome = run(front, url, api_key, int(tasks), float(interval), int(concurrency), float(timeout))
    print(json.dumps(asdict(outcome)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
