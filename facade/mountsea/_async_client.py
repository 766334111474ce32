"""`AsyncMountsea`, the asyncio driver: `httpx.AsyncClient` (or `DefaultAioHttpClient`) and `asyncio.wait`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from typing import Any, Self

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._base import BaseClient, OnUpdate, check_http_client, httpx_client
from ._client import HttpxOnThreads, Outcome
from ._errors import APIError, APITimeoutError
from ._response import Answer, Request, answer_of, request_error, transport_error
from ._scheduler import Scheduler, Tracked
from ._task import Task

__all__ = ["AsyncMountsea"]


class AsyncMountsea(
    BaseClient[
        Coroutine[Any, Any, Task],
        Coroutine[Any, Any, list[Task]],
        AsyncIterator[Task],
        httpx.AsyncClient | DefaultAioHttpClient,
    ]
):
    """The asynchronous Mountsea client, for asyncio.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY`` and ``base_url`` to ``$MOUNTSEA_BASE_URL``,
    then ``https://api.mountsea.ai``. ``timeout`` bounds each request (seconds);
    ``max_retries`` is how often `get()` retries a transient failure. ``http2=True`` (extra
    ``mountsea[http2]``) speaks HTTP/2 where the server offers it. Use it with ``async with``,
    or await `aclose()` when done. Sleeping tasks hold no coroutine.

    Requests go out on an ``httpx.Client`` from worker threads, awaited on the loop: httpx's
    async stack costs twice the CPU per request. A passed-in ``httpx.AsyncClient`` keeps every
    request on the loop (and is left open by `aclose()`); a `DefaultAioHttpClient` (extra
    ``mountsea[aiohttp]``) runs them on aiohttp, the fastest, and is closed by `aclose()`.
    """

    async def aclose(self) -> None:
        """Close the HTTP connections, unless an ``httpx.AsyncClient`` was passed in."""
        if self._threads is not None:
            self._threads.close()
        elif isinstance(self._http, DefaultAioHttpClient):
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _open(self, http_client: httpx.AsyncClient | DefaultAioHttpClient | None, http2: bool) -> None:
        if not isinstance(http_client, DefaultAioHttpClient):
            check_http_client(http_client, httpx.AsyncClient)
        self._http = http_client
        self._threads = None  # the default: a sync httpx client on worker threads (see `_client`)
        if http_client is None:
            self._threads = HttpxOnThreads(httpx_client(httpx.Client, self._headers, http2), headers=None, owned=True)

    async def _send(self, request: Request) -> Answer | APIError:
        try:
            # httpx's timeouts apply to each read: a server trickling its answer would outlast
            # them. The budget bounds the request as a whole.
            async with asyncio.timeout(request.budget):
                return await self._exchange(request)
        except TimeoutError:  # asyncio.timeout's: the drivers turn their own into APIErrors
            return request_error(request, "no complete answer before the deadline", kind=APITimeoutError)

    async def _exchange(self, request: Request) -> Answer | APIError:
        if self._threads is not None:
            loop = asyncio.get_running_loop()
            answered: asyncio.Future[Answer | APIError] = loop.create_future()
            self._threads.submit(request, partial(_reply_from_thread, loop, answered))
            return await answered
        if isinstance(self._http, DefaultAioHttpClient):
            try:
                return await self._http.send(request)
            except APIError as exc:
                return exc
        assert self._http is not None
        try:
            response = await self._http.get(
                request.url, headers=self._headers, timeout=request.timeout, follow_redirects=True
            )
        except httpx.HTTPError as exc:
            return transport_error(exc, request)
        return answer_of(response)

    async def _one(self, scheduler: Scheduler, on_update: OnUpdate) -> Task:
        async for task in self._stream(scheduler, on_update):
            return task
        raise AssertionError  # pragma: no cover - a single call yields its task or raises

    async def _collect(self, scheduler: Scheduler, on_update: OnUpdate) -> list[Task]:
        async for _ in self._stream(scheduler, on_update):
            pass
        return scheduler.results()

    async def _stream(self, scheduler: Scheduler, on_update: OnUpdate) -> AsyncIterator[Task]:
        running: dict[asyncio.Future[Answer | APIError], Tracked] = {}
        try:
            while True:
                plan = scheduler.plan(time.monotonic())
                for task in plan.ready:
                    yield task
                if plan.done:
                    return
                for tracked, budget in plan.send:
                    sending = self._send(self._request(tracked.ref, budget))
                    if scheduler.call.single:  # one request at a time, bounded by its budget in `_send`
                        self._record(scheduler, tracked, await sending, on_update)
                    else:
                        running[asyncio.ensure_future(sending)] = tracked
                if not running:
                    if not plan.send:
                        await asyncio.sleep(plan.wait or 0.0)
                    continue
                done, _ = await asyncio.wait(running, timeout=plan.wait, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    self._record(scheduler, running.pop(future), future.result(), on_update)
        finally:
            for future in running:
                future.cancel()
            if running:  # let the cancelled requests unwind before the generator ends
                await asyncio.wait(running)


def _reply_from_thread(
    loop: asyncio.AbstractEventLoop, answered: asyncio.Future[Answer | APIError], outcome: Outcome
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this answer any more
        loop.call_soon_threadsafe(_settle, answered, outcome)


def _settle(answered: asyncio.Future[Answer | APIError], outcome: Outcome) -> None:
    if answered.done():  # given up at its deadline
        return
    if isinstance(outcome, Answer | APIError):
        answered.set_result(outcome)
    else:
        answered.set_exception(outcome)  # a bug in a worker surfaces in the caller's task
