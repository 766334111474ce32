"""`Mountsea`, the sync driver, and its senders: httpx on worker threads, or an async sender on a loop thread."""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import TYPE_CHECKING, Final, Self

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._base import BaseClient, OnUpdate, new_httpx
from ._errors import APIError
from ._response import Answer, AsyncHttpxSender, Request, answer_of, transport_error
from ._scheduler import Scheduler, Tracked
from ._task import Task

Outcome = Answer | APIError | BaseException  # BaseException: a bug, raised in the caller's thread
_Reply = tuple[Tracked, Outcome]

if TYPE_CHECKING:
    import asyncio


class Mountsea(BaseClient[Task, list[Task], Iterator[Task], httpx.Client | DefaultAioHttpClient]):
    """The synchronous Mountsea client; use it as a context manager, or call `close()`.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY``, ``base_url`` to ``$MOUNTSEA_BASE_URL`` then
    ``https://api.mountsea.ai``; ``timeout`` bounds each request (s); ``max_retries`` is how often `get()` retries a
    transient failure. A passed-in ``httpx.Client`` is used as is and left open; a `DefaultAioHttpClient` (extra
    ``mountsea[aiohttp]``) sends from one event-loop thread, the fastest for batches. ``http2=True`` (extra
    ``mountsea[http2]``) speaks HTTP/2 where offered. A batch's requests, and a ``wait()``'s with a deadline, run on
    worker threads, so that the deadline holds however slowly a server answers; `close()` or the GC ends them.
    """

    _httpx_kind = httpx.Client

    def close(self) -> None:
        """End the worker threads; close the HTTP connections, unless the ``http_client`` was passed in."""
        self._io.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self, http_client: httpx.Client | DefaultAioHttpClient | None, http2: bool) -> None:
        if isinstance(http_client, DefaultAioHttpClient):
            self._io: HttpxOnThreads | OnLoop = OnLoop(http_client)
        elif http2 and http_client is None:  # see AsyncHttpxSender: one connection, on one loop
            self._io = OnLoop(
                AsyncHttpxSender(new_httpx(httpx.AsyncClient, self._headers, http2=True), None, owned=True)
            )
        else:
            self._io = HttpxOnThreads(http_client, self._headers)

    def _one(self, scheduler: Scheduler, on_update: OnUpdate) -> Task:
        # Closed here, not left to the GC, which may finalise it deep in some recursion.
        with contextlib.closing(self._stream(scheduler, on_update)) as stream:
            return next(stream)

    def _collect(self, scheduler: Scheduler, on_update: OnUpdate) -> list[Task]:
        for _ in self._stream(scheduler, on_update):
            pass
        return scheduler.results()

    def _stream(self, scheduler: Scheduler, on_update: OnUpdate) -> Generator[Task, None, None]:
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
            try:  # every answer that came (all, before the next plan), waiting up to plan.wait for one
                answers = [replies.get(timeout=plan.wait)]
            except queue.Empty:
                continue
            while not replies.empty():
                answers.append(replies.get_nowait())
            for tracked, outcome in answers:
                self._record(scheduler, tracked, outcome, on_update)


def _put(replies: queue.SimpleQueue[_Reply], tracked: Tracked, outcome: Outcome) -> None:
    replies.put((tracked, outcome))


class HttpxOnThreads:
    """An ``httpx.Client`` (``http``, or one built with ``headers``) and the worker threads that send with it."""

    def __init__(self, http: httpx.Client | None, headers: httpx.Headers) -> None:
        self._owned, self._headers = http is None, None if http is None else headers  # sent per request if passed in
        self.http = http or new_httpx(httpx.Client, headers)
        self._workers = _Workers()  # started by the first request sent on a thread
        weakref.finalize(self, self._workers.shutdown)  # a client never closed still ends them

    def send(self, request: Request) -> Answer | APIError:
        try:
            response = self.http.get(request.url, headers=self._headers, timeout=request.timeout, follow_redirects=True)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:  # a URL or host httpx cannot use
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


class OnLoop:
    """An async sender (`DefaultAioHttpClient`, `AsyncHttpxSender`) on an event loop of its own thread."""

    def __init__(self, driver: DefaultAioHttpClient | AsyncHttpxSender) -> None:
        import asyncio  # here: `import mountsea` does not load asyncio

        self._driver, self._loop = driver, asyncio.new_event_loop()
        self._run = partial(asyncio.run_coroutine_threadsafe, loop=self._loop)
        threading.Thread(target=_run_until_stopped, args=(self._loop,), name="mountsea-loop", daemon=True).start()
        self._stop = weakref.finalize(self, _stop, self._loop)  # a client never closed still stops it

    def send(self, request: Request) -> Answer | APIError:
        return self._run(self._driver.send(request)).result()

    def submit(self, request: Request, reply: Callable[[Outcome], object]) -> None:
        """Send ``request``; ``reply`` gets the outcome on the loop's thread."""
        self._run(self._driver.send(request)).add_done_callback(lambda done: reply(done.exception() or done.result()))

    def close(self) -> None:
        """Close the connections and stop the loop (once)."""
        if self._stop.alive:
            self._run(self._driver.aclose()).result()
            self._stop()


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
    """A client's request threads, shared by its calls: one starts only when none is idle; `shutdown` ends them.

    Not a ThreadPoolExecutor: its threads hold up interpreter exit until their requests end, so Ctrl-C during a
    batch would hang for up to a request timeout; and one queue of answers is cheaper to wait on than a set of futures.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forget_threads()
        _ALL_WORKERS.add(self)

    def _forget_threads(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per worker waiting for a job
        self._started = 0

    def submit(self, reply: Callable[[Outcome], object], call: Callable[[], Answer | APIError]) -> None:
        """Run ``call`` on a worker and hand its outcome to ``reply``, on the worker's thread."""
        with self._lock:
            new_thread = not self._idle.acquire(blocking=False)
            self._started += new_thread
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
        for reply, call in iter(jobs.get, None):
            try:
                outcome: Outcome = call()
            except BaseException as exc:  # handed to the caller's thread, which raises it
                outcome = exc
            idle.release()  # before the reply: the batch may submit its next job on seeing it
            reply(outcome)
            # An idle worker holds neither the client (an unclosed one is collected, ending its workers) nor a task.
            del reply, call, outcome


# Every pool, for a forked child to forget its threads: they did not survive the fork; a job queued for one would hang.
_ALL_WORKERS: Final[weakref.WeakSet[_Workers]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for workers in list(_ALL_WORKERS):
        workers._lock = threading.Lock()  # a parent's thread may have held it: none exists here
        workers._forget_threads()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
