"""`Mountsea`, the synchronous driver, and its I/O: `httpx.Client` requests, on worker threads when needed.

The threads also serve `AsyncMountsea` by default: httpx's own async stack costs about twice
the CPU of its sync one per request (encode/httpx#3215: httpcore's async pool and anyio), so
the async driver awaits a sync client's answers unless it is given an ``httpx.AsyncClient``
or a `DefaultAioHttpClient`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import os
import queue
import threading
import time
import typing
import weakref
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._base import BaseClient, OnUpdate, check_http_client, httpx_client
from ._errors import APIError
from ._response import Answer, Request, answer_of, transport_error
from ._scheduler import Scheduler, Tracked
from ._task import Task

__all__ = ["HttpxOnThreads", "Mountsea", "Outcome"]

Outcome = Answer | APIError | BaseException  # BaseException: a bug, raised in the caller's thread
_Reply = tuple[Tracked, Outcome]
T = TypeVar("T")

if TYPE_CHECKING:
    import asyncio


class Mountsea(BaseClient[Task, list[Task], Iterator[Task], httpx.Client | DefaultAioHttpClient]):
    """The synchronous Mountsea client.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY`` and ``base_url`` to ``$MOUNTSEA_BASE_URL``,
    then ``https://api.mountsea.ai``. ``timeout`` bounds each request (seconds);
    ``max_retries`` is how often `get()` retries a transient failure. A passed-in
    ``httpx.Client`` is used as is and left open by `close()`; a `DefaultAioHttpClient` (extra
    ``mountsea[aiohttp]``) sends every request from one event-loop thread on aiohttp, the
    fastest for batches, and is closed by `close()`. ``http2=True`` (extra
    ``mountsea[http2]``) speaks HTTP/2 where the server offers it.

    A batch's requests, and a ``wait()``'s when it has a deadline, run on the client's
    worker threads (so that a deadline holds however slowly a server answers); `close()`,
    or the client's garbage collection, ends them. Use it as a context manager, or call
    `close()`.
    """

    def close(self) -> None:
        """End the worker threads; close the HTTP connections, unless the ``http_client`` was passed in."""
        self._io.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self, http_client: httpx.Client | DefaultAioHttpClient | None, http2: bool) -> None:
        if isinstance(http_client, DefaultAioHttpClient):
            self._io: HttpxOnThreads | AioHttpOnLoop = AioHttpOnLoop(http_client)
            return
        check_http_client(http_client, httpx.Client)
        http = http_client or httpx_client(httpx.Client, self._headers, http2)
        self._io = HttpxOnThreads(http, headers=None if http_client is None else self._headers, owned=not http_client)

    def _one(self, scheduler: Scheduler, on_update: OnUpdate) -> Task:
        return next(iter(self._stream(scheduler, on_update)))

    def _collect(self, scheduler: Scheduler, on_update: OnUpdate) -> list[Task]:
        for _ in self._stream(scheduler, on_update):
            pass
        return scheduler.results()

    def _stream(self, scheduler: Scheduler, on_update: OnUpdate) -> Iterator[Task]:
        replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()  # this call's answers
        while True:
            plan = scheduler.plan(time.monotonic())
            yield from plan.ready
            if plan.done:
                return
            for tracked, budget in plan.send:
                request = self._request(tracked.ref, budget)
                if budget is None and scheduler.call.single:  # nothing to give up on: no thread needed
                    self._record(scheduler, tracked, self._io.send(request), on_update)
                else:
                    self._io.submit(request, partial(_put, replies, tracked))
            if not scheduler.in_flight:
                if not plan.send:
                    time.sleep(plan.wait or 0.0)
                continue
            for tracked, outcome in _answers(replies, timeout=plan.wait):
                self._record(scheduler, tracked, outcome, on_update)


def _put(replies: queue.SimpleQueue[_Reply], tracked: Tracked, outcome: Outcome) -> None:
    replies.put((tracked, outcome))


def _answers(replies: queue.SimpleQueue[_Reply], timeout: float | None) -> list[tuple[Tracked, Answer | APIError]]:
    """The answers that arrived, waiting up to ``timeout`` seconds for the first."""
    try:
        done = [replies.get(timeout=timeout)]
    except queue.Empty:
        return []
    while not replies.empty():
        done.append(replies.get_nowait())
    for _, outcome in done:
        if not isinstance(outcome, Answer | APIError):
            raise outcome  # a bug in a worker surfaces in the caller's thread
    return typing.cast(list[tuple[Tracked, Answer | APIError]], done)


class HttpxOnThreads:
    """An ``httpx.Client`` and the worker threads that send with it."""

    def __init__(self, http: httpx.Client, *, headers: httpx.Headers | None, owned: bool) -> None:
        self.http, self._headers, self._owned = http, headers, owned  # headers: sent per request when not owned
        self._workers = _Workers()  # started by the first request sent on a thread
        weakref.finalize(self, self._workers.shutdown)  # a client never closed still ends them

    def send(self, request: Request) -> Answer | APIError:
        """Send ``request`` on this thread."""
        try:
            response = self.http.get(request.url, headers=self._headers, timeout=request.timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            return transport_error(exc, request)
        return answer_of(response)

    def submit(self, request: Request, reply: Callable[[Outcome], object]) -> None:
        """Send ``request`` on a worker thread; ``reply`` gets the outcome there."""
        self._workers.submit(reply, partial(self.send, request))

    def close(self) -> None:
        """End the threads once their requests are done; close the connections of a client we built."""
        self._workers.shutdown()
        if self._owned:
            self.http.close()


class AioHttpOnLoop:
    """A `DefaultAioHttpClient` run on an event loop of its own thread, for the sync client."""

    def __init__(self, driver: DefaultAioHttpClient) -> None:
        import asyncio  # here: `import mountsea` does not load asyncio

        self._driver, self._loop = driver, asyncio.new_event_loop()
        self._submit = asyncio.run_coroutine_threadsafe
        threading.Thread(target=_run_until_stopped, args=(self._loop,), name="mountsea-aiohttp", daemon=True).start()
        self._stop = weakref.finalize(self, _stop, self._loop)  # a client never closed still stops it

    def send(self, request: Request) -> Answer | APIError:
        """Send ``request`` and wait for its outcome."""
        return self._run(self._outcome(request)).result()

    def submit(self, request: Request, reply: Callable[[Outcome], object]) -> None:
        """Send ``request``; ``reply`` gets the outcome on the loop's thread."""
        self._run(self._outcome(request)).add_done_callback(lambda done: reply(done.exception() or done.result()))

    def close(self) -> None:
        """Close the connections and stop the loop (once)."""
        if self._stop.alive:
            self._run(self._driver.aclose()).result()
            self._stop()

    def _run(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return self._submit(work, self._loop)

    async def _outcome(self, request: Request) -> Answer | APIError:
        try:
            return await self._driver.send(request)
        except APIError as exc:
            return exc


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(RuntimeError):  # closed already
        loop.call_soon_threadsafe(loop.stop)


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


_Job = tuple[Callable[[Outcome], object], Callable[[], Answer | APIError]]


class _Workers:
    """A client's request threads, shared by its calls; `shutdown` ends them.

    A thread starts only when no worker is idle, so there are never more threads than
    requests in flight at once; between batches they wait for the next one rather than
    being started anew. Each outcome goes to the ``reply`` its job came with.

    Not a ThreadPoolExecutor: its threads hold up interpreter exit until their requests
    end, so Ctrl-C during a batch would hang for up to a request timeout; and one queue
    of answers is cheaper to wait on than a set of futures.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forget_threads()
        _ALL_WORKERS.add(self)

    def _forget_threads(self) -> None:
        """A queue, permits and a count of threads of its own: none yet."""
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per worker waiting for a job
        self._started = 0

    def submit(self, reply: Callable[[Outcome], object], call: Callable[[], Answer | APIError]) -> None:
        """Run ``call`` on a worker and hand its outcome to ``reply``, on the worker's thread."""
        with self._lock:
            new_thread = not self._idle.acquire(blocking=False)
            if new_thread:
                self._started += 1
            jobs, idle = self._jobs, self._idle
            # The caller's context variables (a tracing span, say) go with the request.
            jobs.put((reply, partial(contextvars.copy_context().run, call)))
        if new_thread:  # started outside the lock: a signal handler calling close() meanwhile cannot deadlock
            threading.Thread(target=self._work, args=(jobs, idle), name="mountsea-worker", daemon=True).start()

    def shutdown(self) -> None:
        """Let each worker end once its current request is done."""
        with self._lock:
            jobs, started = self._jobs, self._started
            self._forget_threads()
        for _ in range(started):
            jobs.put(None)

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None], idle: threading.Semaphore) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            _Workers._serve(job, idle)
            # An idle worker holds nothing: not the client (an unclosed client can then be
            # collected, and its finaliser ends the workers), nor the last task.
            del job

    @staticmethod
    def _serve(job: _Job, idle: threading.Semaphore) -> None:
        reply, call = job
        try:
            outcome: Outcome = call()
        except BaseException as exc:  # handed to the caller's thread, which raises it
            outcome = exc
        idle.release()  # before the reply: the batch may submit its next job on seeing it
        reply(outcome)


# Every pool, to forget its threads in a forked child: they did not survive the fork,
# and a job queued for one of them would wait forever.
_ALL_WORKERS: Final[weakref.WeakSet[_Workers]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for workers in list(_ALL_WORKERS):
        workers._lock = threading.Lock()  # a parent's thread may have held it: none exists here
        workers._forget_threads()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
