"""`Mountsea`, the synchronous driver: `httpx.Client`, on worker threads when a deadline must hold."""

from __future__ import annotations

import queue
import time
import typing
from collections.abc import Iterator
from functools import partial
from typing import Self

import httpx

from ._base import BaseClient, OnUpdate, check_http_client, httpx_client
from ._errors import APIError
from ._response import Answer
from ._scheduler import Scheduler, Tracked
from ._task import Task
from ._threads import HttpxOnThreads, Outcome

__all__ = ["Mountsea"]

_Reply = tuple[Tracked, Outcome]


class Mountsea(BaseClient[Task, list[Task], Iterator[Task], httpx.Client]):
    """The synchronous Mountsea client.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY`` and ``base_url`` to ``$MOUNTSEA_BASE_URL``,
    then ``https://api.mountsea.ai``. ``timeout`` bounds each request (seconds);
    ``max_retries`` is how often `get()` retries a transient failure. A passed-in
    ``http_client`` is used as is and left open by `close()`; ``http2=True`` (extra
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

    def _open(self, http_client: httpx.Client | None, http2: bool) -> None:
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
