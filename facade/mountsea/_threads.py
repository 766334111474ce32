"""Requests on `httpx.Client` from worker threads: the sync driver's I/O, and the async driver's default.

httpx's own async stack costs about twice the CPU of its sync one per request (encode/httpx#3215:
httpcore's async pool and anyio), so `AsyncMountsea` sends with a sync client on these threads
and awaits the answers, unless it is given an ``httpx.AsyncClient`` or a `DefaultAioHttpClient`.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import Final

import httpx

from ._errors import APIError
from ._response import Answer, Request, answer_of, transport_error

__all__ = ["HttpxOnThreads", "Outcome"]


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


Outcome = Answer | APIError | BaseException  # BaseException: a bug, raised in the caller's thread
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
