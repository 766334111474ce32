"""One throughput figure, in a fresh process: its CPU time is this contender's alone.

``python throughput_worker.py CONTENDER URL API_KEY TASKS CONCURRENCY`` reads the tasks ``b0``
... ``b<TASKS-1>`` of the producer service, each completed on its first poll, with at most
CONCURRENCY requests in flight, after a warm-up over ``2 * CONCURRENCY`` others (which opens
the connections and imports what a first request needs). It prints one JSON line: the
``wall`` and ``cpu`` seconds of the measured part, the ``requests`` that got a completed task,
``how`` it was driven, and the ``errors`` of the tasks a client's batch could not read. ``SSL_CERT_FILE`` names the CA of an ``https://`` URL.

The contenders (`CONTENDERS`):

* ``sync``: ``Mountsea.as_completed`` (threads + httpx);
* ``sync-aiohttp``: ``Mountsea(http_client=DefaultAioHttpClient()).as_completed`` once the sync
  client takes that driver; until then a stand-in, said in ``how``: the driver alone (`drive`)
  on an event-loop thread, each Task handed to the calling thread through a queue;
* ``async``: ``AsyncMountsea.as_completed``, its default driver (httpcore's connections on the loop);
* ``async-httpx``: ``AsyncMountsea(http_client=httpx.AsyncClient()).as_completed`` (on the loop);
* ``aiohttp``: ``AsyncMountsea(http_client=DefaultAioHttpClient()).as_completed``;
* ``http2``: ``AsyncMountsea(http2=True).as_completed`` over TLS (one connection, many streams);
* ``bare-httpx``: CONCURRENCY coroutines on one ``httpx.AsyncClient``, body read, not parsed;
* ``raw-aiohttp``: the same on one ``aiohttp.ClientSession``: the physical limit for Python here.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import httpx

import mountsea
from mountsea._aiohttp import DefaultAioHttpClient
from mountsea._response import Request, read_answer

CONTENDERS = (
    "sync",
    "sync-aiohttp",
    "async",
    "async-httpx",
    "aiohttp",
    "http2",
    "bare-httpx",
    "raw-aiohttp",
)
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=64)  # as AsyncMountsea's own


def refs(prefix: str, count: int) -> list[mountsea.TaskRef]:
    return [mountsea.TaskRef("producer", f"{prefix}{i}") for i in range(count)]


class Meter:
    """Wall and CPU time of the measured part; `count` the requests that read a completed task."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.count = 0
        self.how = ""
        self.errors: list[str] = []  # one per task a client's batch could not read (its BatchError)

    def start(self) -> None:
        self.cpu, self.wall = time.process_time(), time.monotonic()

    def stop(self) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.monotonic() - self.wall


async def loop(ids: Iterator[str], concurrency: int, read: Callable[[str], Awaitable[bool]]) -> int:
    """``concurrency`` coroutines reading ``ids`` one after the other; how many reads succeeded."""
    done = 0

    async def worker() -> None:
        nonlocal done
        for task_id in ids:  # one shared iterator: each id is taken once
            succeeded = await read(task_id)
            done += succeeded  # not `done += await ...`, which would add to a stale `done`

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def drive(
    driver: DefaultAioHttpClient,
    target: str,
    headers: dict[str, str],
    ids: Iterator[str],
    warm: Iterator[str],
    concurrency: int,
    meter: Meter,
    sink: Callable[[mountsea.Task], object] | None = None,
) -> None:
    """A driver alone: `send` and `read_answer`, no scheduler.

    With ``sink``, each measured Task goes there, and the caller stops the meter.
    """
    driver._bind(headers, 5)
    timeout = httpx.Timeout(30.0)
    measuring = False

    async def read(task_id: str) -> bool:
        answer = await driver.send(Request("producer", task_id, target + task_id, timeout, None))
        task = read_answer(mountsea.TaskRef("producer", task_id), answer, time.time())
        if sink is not None and measuring:
            sink(task)
        return task.succeeded

    try:
        await loop(warm, concurrency, read)
        measuring = True
        meter.start()
        meter.count = await loop(ids, concurrency, read)
        if sink is None:
            meter.stop()
    finally:
        await driver.aclose()


def sync_on_a_loop_thread(url: str, key: str, tasks: int, concurrency: int, meter: Meter) -> None:
    """``Mountsea`` on aiohttp if it takes the driver; else the driver alone on an event-loop thread."""
    try:
        client = mountsea.Mountsea(key, base_url=url, http_client=DefaultAioHttpClient())  # type: ignore[arg-type]
    except mountsea.ConfigurationError:  # the sync client takes only an httpx.Client so far
        pass
    else:
        meter.how = "Mountsea(http_client=DefaultAioHttpClient()).as_completed"
        with client:
            run_sync(client, tasks, concurrency, meter)
        return
    meter.how = "stand-in: DefaultAioHttpClient alone on an event-loop thread, Tasks handed over by a queue"
    results: queue.SimpleQueue[mountsea.Task] = queue.SimpleQueue()
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    ids = (f"b{i}" for i in range(tasks))
    warm = (f"w{i}" for i in range(2 * concurrency))
    coroutine = drive(
        DefaultAioHttpClient(), f"{url}/producer/tasks?taskId=", headers, ids, warm, concurrency, meter, results.put
    )
    thread = threading.Thread(target=asyncio.run, args=(coroutine,))
    thread.start()
    for _ in range(tasks):
        meter.count += results.get(timeout=60).succeeded
    meter.stop()
    thread.join()


def run_sync(client: mountsea.Mountsea, tasks: int, concurrency: int, meter: Meter) -> None:
    """A warm-up batch, then the measured `as_completed`."""
    client.wait_all(refs("w", 2 * concurrency), max_concurrency=concurrency)
    meter.start()
    try:
        for task in client.as_completed(refs("b", tasks), max_concurrency=concurrency):
            meter.count += task.succeeded
    except mountsea.BatchError as exc:  # reported with the figure, not a crash of the benchmark
        meter.errors = [str(error) for error in exc.errors.values()]
    meter.stop()


async def run_async(contender: str, url: str, key: str, tasks: int, concurrency: int, meter: Meter) -> None:
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    target = f"{url}/producer/tasks?taskId="
    http = httpx.AsyncClient(limits=LIMITS)  # opens no connection unless `async-httpx` sends with it
    clients: dict[str, tuple[str, Callable[[], mountsea.AsyncMountsea]]] = {
        "async": ("AsyncMountsea.as_completed", lambda: mountsea.AsyncMountsea(key, base_url=url)),
        "async-httpx": (
            "AsyncMountsea(http_client=httpx.AsyncClient()).as_completed",
            lambda: mountsea.AsyncMountsea(key, base_url=url, http_client=http),
        ),
        "aiohttp": (
            "AsyncMountsea(http_client=DefaultAioHttpClient()).as_completed",
            lambda: mountsea.AsyncMountsea(key, base_url=url, http_client=DefaultAioHttpClient()),
        ),
        "http2": (
            "AsyncMountsea(http2=True).as_completed",
            lambda: mountsea.AsyncMountsea(key, base_url=url, http2=True),
        ),
    }
    if contender in clients:
        meter.how, build = clients[contender]
        async with http, build() as client:  # a passed-in client is left open by AsyncMountsea
            await client.wait_all(refs("w", 2 * concurrency), max_concurrency=concurrency)
            meter.start()
            try:
                async for task in client.as_completed(refs("b", tasks), max_concurrency=concurrency):
                    meter.count += task.succeeded
            except mountsea.BatchError as exc:  # reported with the figure, not a crash of the benchmark
                meter.errors = [str(error) for error in exc.errors.values()]
            meter.stop()
        return
    ids = (f"b{i}" for i in range(tasks))
    warm = (f"w{i}" for i in range(2 * concurrency))
    if contender == "bare-httpx":
        meter.how = "httpx.AsyncClient.get, body read"
        async with httpx.AsyncClient(headers=headers, limits=LIMITS) as bare:

            async def read(task_id: str) -> bool:
                response = await bare.get(target + task_id)
                return response.status_code == 200 and b'"completed"' in response.content

            await loop(warm, concurrency, read)
            meter.start()
            meter.count = await loop(ids, concurrency, read)
            meter.stop()
        return
    if contender == "raw-aiohttp":
        meter.how = "aiohttp.ClientSession.get, body read"
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=100)) as session:

            async def read(task_id: str) -> bool:
                async with session.get(target + task_id) as response:
                    return response.status == 200 and b'"completed"' in await response.read()

            await loop(warm, concurrency, read)
            meter.start()
            meter.count = await loop(ids, concurrency, read)
            meter.stop()
        return
    msg = f"unknown contender {contender!r}; one of {CONTENDERS}"
    raise ValueError(msg)


def main(argv: list[str]) -> None:
    contender, url, key, tasks, concurrency = argv
    meter = Meter()
    if contender == "sync-aiohttp":
        sync_on_a_loop_thread(url, key, int(tasks), int(concurrency), meter)
    elif contender == "sync":
        meter.how = "Mountsea.as_completed"
        with mountsea.Mountsea(key, base_url=url) as client:
            run_sync(client, int(tasks), int(concurrency), meter)
    else:
        asyncio.run(run_async(contender, url, key, int(tasks), int(concurrency), meter))
    out = {"wall": meter.wall, "cpu": meter.cpu, "requests": meter.count, "how": meter.how, "errors": meter.errors}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
