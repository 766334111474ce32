"""What one tracked task costs on the Python heap, measured with `tracemalloc` in a fresh process.

``python heap.py TASKS`` builds the fan-out scheduler over TASKS producer tasks, sends every
one of them (`CONCURRENCY` at a time) and answers each with a `pending` Task parsed from the JSON FakeMountsea would
send (id, status, creation time, trace id), then prints the traced bytes per task as one JSON
line: the state `as_completed` keeps for an unfinished task between two polls, its TaskRef and
a UUID-long id included.
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import mountsea
from mountsea._retry import PollPolicy
from mountsea._scheduler import Call, ClientState, Scheduler
from mountsea._task import SERVICES, parse_task

CONCURRENCY = 64


@dataclass(frozen=True)
class HeapPerTask:
    """Traced Python heap per task, bytes: once scheduled, and once seen pending."""

    tasks: int
    scheduled: float  # before any answer: the task's polling state and heap entry
    pending: float  # after one pending answer: plus the last Task seen


def _task_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"  # as long as a UUID


def measure(tasks: int) -> HeapPerTask:
    """Run in this process (see the module docstring)."""
    producer = SERVICES["producer"]
    answers = [
        json.dumps(
            {"taskId": task_id, "status": "pending", "createdAt": "2026-11-23T08:00:00.000Z", "traceId": f"trace-{i}"}
        ).encode()
        for i, task_id in enumerate(map(_task_id, range(tasks)))
    ]
    gc.collect()
    tracemalloc.start()
    # The refs count too: the scheduler keeps each one, with its id, for as long as the task.
    refs = [mountsea.TaskRef("producer", _task_id(i)) for i in range(tasks)]
    call = Call(until_done=True, single=False, deadline=None, policy=PollPolicy.fixed(5.0), max_retries=2)
    state = ClientState(rng=random.Random(0))
    scheduler = Scheduler(refs, call=call, state=state, now=0.0, max_concurrency=CONCURRENCY)
    scheduled = tracemalloc.get_traced_memory()[0]
    while sent := scheduler.plan(0.0).send:  # as a front end would: CONCURRENCY requests at a time
        for tracked, _ in sent:
            task = parse_task(producer, json.loads(answers[tracked.index]), task_id=tracked.ref.id)
            scheduler.record(tracked, task, 0.1, {})
    del sent
    gc.collect()
    pending = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return HeapPerTask(tasks, scheduled / tasks, pending / tasks)


def heap_per_task(tasks: int = 10_000) -> HeapPerTask:
    """`measure` in a fresh interpreter, so that nothing else is on the traced heap."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), str(tasks)], capture_output=True, text=True, check=True, timeout=120
    )
    return HeapPerTask(**json.loads(done.stdout))


if __name__ == "__main__":
    result = measure(int(sys.argv[1]))
    print(json.dumps({"tasks": result.tasks, "scheduled": result.scheduled, "pending": result.pending}))
