"""One fan-out run, in its own process so that its RSS, CPU time and threads are the client's alone.

``python fanout_worker.py FRONT URL API_KEY TASKS INTERVAL CONCURRENCY TIMEOUT`` polls the tasks
``f0`` ... ``f<TASKS-1>`` of the producer service through ``as_completed``, with
``PollPolicy.fixed(INTERVAL)`` and a deadline of TIMEOUT seconds. It builds its client and refs,
prints ``READY``, waits for a line on stdin (the parent scripts the tasks meanwhile), runs, and
prints one JSON line. It exits at once if stdin closes first (the parent is gone).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass

import mountsea
from mountsea import PollPolicy, Task, TaskRef


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


def run(front: str, url: str, api_key: str, tasks: int, interval: float, concurrency: int, timeout: float) -> Outcome:
    """Set up, wait for the parent's go, poll every task to the end, and measure."""
    refs = [TaskRef("producer", f"f{i}") for i in range(tasks)]
    policy = PollPolicy.fixed(interval)
    probe = Probe()
    # The client exists before the baseline: its TLS context and pool are not per-task costs.
    sync_client = mountsea.Mountsea(api_key, base_url=url) if front == "sync" else None
    async_client = mountsea.AsyncMountsea(api_key, base_url=url) if front == "async" else None
    gc.collect()
    print("READY", flush=True)
    if not sys.stdin.readline():
        sys.exit("fanout_worker: stdin closed before the go")

    reset_peak_rss()
    rss_before = memory_kb()["VmRSS"]
    threads_before = threading.active_count()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    if sync_client is not None:
        with sync_client:
            batch = sync_client.as_completed(
                refs, timeout=timeout, poll=policy, max_concurrency=concurrency, on_update=probe.sample
            )
            for task in batch:
                probe.result(task)
    elif async_client is not None:

        async def drive(client: mountsea.AsyncMountsea) -> None:
            async with client:
                batch = client.as_completed(
                    refs, timeout=timeout, poll=policy, max_concurrency=concurrency, on_update=probe.sample
                )
                async for task in batch:
                    probe.result(task)

        asyncio.run(drive(async_client))
    else:
        msg = f"front must be 'sync' or 'async', not {front!r}"
        raise ValueError(msg)
    wall = time.monotonic() - t0
    return Outcome(
        t0=t0,
        wall=wall,
        finished=probe.finished,
        succeeded=probe.succeeded,
        cpu=time.process_time() - cpu0,
        rss_before_kb=rss_before,
        rss_peak_kb=memory_kb()["VmHWM"],
        threads_before=threads_before,
        threads_peak=probe.threads_peak,
    )


def main(argv: list[str]) -> None:
    """Parse the positional arguments, run, print the outcome as JSON."""
    front, url, api_key, tasks, interval, concurrency, timeout = argv
    outcome = run(front, url, api_key, int(tasks), float(interval), int(concurrency), float(timeout))
    print(json.dumps(asdict(outcome)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
