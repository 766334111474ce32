"""`AsyncMountsea`, the asyncio driver: `httpx.AsyncClient` (or `DefaultAioHttpClient`) and `asyncio.wait`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from functools import partial
from typing import Any, Self

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._base import BaseClient, OnUpdate, new_httpx
from ._client import HttpxOnThreads, Outcome
from ._errors import APITimeoutError
from ._response import AsyncHttpxSender, Request, request_error
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
    """The asynchronous Mountsea client, for asyncio: the arguments of `Mountsea`.

    Use it with ``async with``, or await `aclose()` when done. Sleeping tasks hold no coroutine.

    Requests go out on an ``httpx.Client`` from worker threads, awaited on the loop: httpx's
    async stack costs twice the CPU per request. A passed-in ``httpx.AsyncClient`` keeps every
    request on the loop (and is left open by `aclose()`); a `DefaultAioHttpClient` (extra
    ``mountsea[aiohttp]``) runs them on aiohttp, the fastest, and is closed by `aclose()`.
    """

    _httpx_kind = httpx.AsyncClient

    async def aclose(self) -> None:
        """Close the HTTP connections, unless an ``httpx.AsyncClient`` was passed in."""
        if self._threads is not None:
            self._threads.close()
        elif self._sender is not None:
            await self._sender.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _open(self, http_client: httpx.AsyncClient | DefaultAioHttpClient | None, http2: bool) -> None:
        self._sender: AsyncHttpxSender | DefaultAioHttpClient | None = http_client  # type: ignore[assignment]
        if isinstance(http_client, httpx.AsyncClient):
            self._sender = AsyncHttpxSender(http_client, self._headers, owned=False)
        elif http2 and http_client is None:
            self._sender = AsyncHttpxSender(new_httpx(httpx.AsyncClient, self._headers, http2=True), None, owned=True)
        self._threads = HttpxOnThreads(None, self._headers) if self._sender is None else None  # the default

    async def _send(self, request: Request) -> Outcome:
        try:  # httpx's timeouts bound each read, which a trickled answer outlasts: the budget bounds it all
            async with asyncio.timeout(request.budget) if request.budget is not None else contextlib.nullcontext():
                if self._threads is None:
                    assert self._sender is not None
                    return await self._sender.send(request)
                # A future of the loop, set on the loop: cheaper than wrapping a thread's. An answer given up on is dropped.
                loop = asyncio.get_running_loop()
                future: asyncio.Future[Outcome] = loop.create_future()
                self._threads.submit(request, partial(_reply_from_thread, loop, future))
                return await future
        except TimeoutError:  # asyncio.timeout's: the drivers turn their own into APIErrors
            return request_error(request, "no complete answer before the deadline", kind=APITimeoutError)

    async def _one(self, scheduler: Scheduler, on_update: OnUpdate) -> Task:
        async with contextlib.aclosing(self._stream(scheduler, on_update)) as stream:
            return await anext(stream)  # closed at once, not by a task the GC's finaliser would wake the loop for

    async def _collect(self, scheduler: Scheduler, on_update: OnUpdate) -> list[Task]:
        async for _ in self._stream(scheduler, on_update):
            pass
        return scheduler.results()

    async def _stream(self, scheduler: Scheduler, on_update: OnUpdate) -> AsyncGenerator[Task, None]:
        running: dict[asyncio.Future[Outcome], Tracked] = {}
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


def _reply_from_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Outcome], got: Outcome) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for this answer any more
        loop.call_soon_threadsafe(lambda: None if future.done() else future.set_result(got))
