"""`AsyncMountsea`, the asyncio driver: `httpx.AsyncClient` (or `DefaultAioHttpClient`) and `asyncio.wait`."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any, Self

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._base import DEFAULT_LIMITS, MAX_REDIRECTS, BaseClient, OnUpdate, new_httpx
from ._client import Outcome
from ._errors import APITimeoutError
from ._httpcore import HttpcoreSender
from ._response import AsyncHttpxSender, Request, request_error
from ._scheduler import Scheduler, Tracked
from ._task import Task


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

    Every request runs on the loop: by default on httpcore's connections (what httpx sends with) without httpx's
    client layer, about the CPU of the sync client per request; through an ``httpx.AsyncClient`` where a proxy is set in
    the environment or with ``http2=True``. A passed-in ``httpx.AsyncClient`` is used as it is (and left open by
    `aclose()`); a `DefaultAioHttpClient` (extra ``mountsea[aiohttp]``) runs them on aiohttp, the fastest.
    """

    _httpx_kind = httpx.AsyncClient

    async def aclose(self) -> None:
        """Close the HTTP connections, unless an ``httpx.AsyncClient`` was passed in."""
        await self._sender.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _open(self, http_client: httpx.AsyncClient | DefaultAioHttpClient | None, http2: bool) -> None:
        self._sender: HttpcoreSender | AsyncHttpxSender | DefaultAioHttpClient
        if isinstance(http_client, httpx.AsyncClient):
            self._sender = AsyncHttpxSender(http_client, self._headers, owned=False)
        elif http_client is not None:
            self._sender = http_client
        elif http2 or _proxied(self.base_url):  # httpx reads the proxy settings
            self._sender = AsyncHttpxSender(new_httpx(httpx.AsyncClient, self._headers, http2=http2), None, owned=True)
        else:
            self._sender = HttpcoreSender(self._headers, DEFAULT_LIMITS, MAX_REDIRECTS)

    async def _send(self, request: Request) -> Outcome:
        if request.budget is None:
            return await self._sender.send(request)
        try:  # httpx's timeouts bound each read, which a trickled answer outlasts: the budget bounds it all
            async with asyncio.timeout(request.budget):
                return await self._sender.send(request)
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


def _proxied(base_url: str) -> bool:
    """Whether the environment sets a proxy for ``base_url`` (``HTTPS_PROXY``, ``ALL_PROXY``... and ``NO_PROXY``)."""
    url = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(url.netloc)
