"""`AsyncMountsea`, the asynchronous client: `httpx.AsyncClient` and `asyncio.sleep` around the polling core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Self

import httpx

from ._base import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    MAX_REDIRECTS,
    BaseClient,
    BaseTasks,
)
from ._errors import APIError
from ._generated import SERVICES, Service
from ._polling import Done, Fail, Poll, PollPolicy
from ._scheduler import Scheduler, Tracked
from ._task import Task, TaskRef

__all__ = ["AsyncMountsea", "AsyncServiceClient", "AsyncTasks"]


class AsyncMountsea(BaseClient):
    """The asynchronous Mountsea client, for asyncio.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY`` and ``base_url`` to ``$MOUNTSEA_BASE_URL``,
    then ``https://api.mountsea.ai``. ``timeout`` bounds each request (seconds);
    ``max_retries`` is how often `get()` retries a transient failure. A passed-in
    ``http_client`` is used as is and left open by `close()`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
            http_client_type=httpx.AsyncClient,
        )
        self._http = (
            http_client
            if http_client is not None
            else httpx.AsyncClient(headers=self._headers, max_redirects=MAX_REDIRECTS, limits=DEFAULT_LIMITS)
        )
        self.producer = AsyncServiceClient(self, SERVICES["producer"])
        self.xai = AsyncServiceClient(self, SERVICES["xai"])

    def as_completed(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> AsyncIterator[Task]:
        """Yield each task's final `Task` as soon as it is terminal, in completion order.

        ``refs`` mixes `TaskRef` and `Task` objects of both services. Failed tasks are
        yielded like any other (``task.succeeded`` tells). ``timeout`` is one deadline for
        the whole batch: `WaitTimeoutError` then lists the ``pending`` tasks, ready to be
        passed back in. A task that cannot be read (a 404...) does not stop the others:
        `BatchError` reports it once they are all done. 401 and 403 stop the batch at once.
        A task is forgotten once yielded: a stream of any length holds only the unfinished.
        At most ``max_concurrency`` requests are in flight; sleeping tasks hold no coroutine.
        """
        scheduler = self._scheduler(
            refs, now=time.monotonic(), timeout=timeout, poll=poll, max_concurrency=max_concurrency
        )
        return self._drive(scheduler, on_update)

    async def wait_all(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> list[Task]:
        """Wait for every task and return their final `Task` objects in input order.

        Same arguments and errors as `as_completed`; the errors' ``finished`` attribute
        holds the tasks that did finish.
        """
        scheduler = self._scheduler(
            refs, now=time.monotonic(), timeout=timeout, poll=poll, max_concurrency=max_concurrency, keep_results=True
        )
        async for _ in self._drive(scheduler, on_update):
            pass
        return scheduler.results()

    async def aclose(self) -> None:
        """Close the HTTP connections, unless the ``http_client`` was passed in."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _fetch(self, service: Service, task_id: str, budget: float | None) -> Task:
        request = self._request(service, task_id, budget)
        try:
            # httpx's timeouts apply to each read: a server trickling its answer would outlast
            # them. The deadline bounds the request as a whole.
            async with asyncio.timeout(budget):
                response = await self._http.request(**request)
        except httpx.HTTPError as exc:
            raise self._failed(exc, service, task_id) from exc
        except TimeoutError as exc:  # asyncio.timeout's: httpx's own are HTTPErrors
            raise self._overdue(service, task_id) from exc
        return self._answer(service, task_id, response)

    async def _outcome(self, ref: TaskRef, budget: float | None) -> Task | APIError:
        try:
            return await self._fetch(SERVICES[ref.service], ref.id, budget)
        except APIError as exc:
            return exc

    async def _drive(self, scheduler: Scheduler, on_update: Callable[[Task], object] | None) -> AsyncIterator[Task]:
        running: dict[asyncio.Future[Task | APIError], Tracked] = {}
        try:
            while True:
                for task in scheduler.take_ready():
                    yield task
                now = time.monotonic()
                if scheduler.over(now):
                    return
                for tracked in scheduler.due(now):
                    running[asyncio.ensure_future(self._outcome(tracked.ref, scheduler.budget(now)))] = tracked
                wakeup = scheduler.wakeup()
                pause = None if wakeup is None else max(0.0, wakeup - now)
                if not running:
                    await asyncio.sleep(pause or 0.0)
                    continue
                done, _ = await asyncio.wait(running, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    update = scheduler.on_outcome(running.pop(future), future.result(), time.monotonic())
                    if update is not None and on_update is not None:
                        on_update(update)
        finally:
            for future in running:
                future.cancel()
            if running:  # let the cancelled requests unwind before the generator ends
                await asyncio.wait(running)

    async def _run(
        self, poll: Poll, service: Service, task_id: str, on_update: Callable[[Task], object] | None
    ) -> Task:
        step = poll.start(time.monotonic())
        while True:
            if step.update is not None and on_update is not None:
                on_update(step.update)
            if isinstance(step, Done):
                return step.task
            if isinstance(step, Fail):
                raise step.error
            if (pause := step.at - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            try:
                task = await self._fetch(service, task_id, poll.budget(time.monotonic()))
            except APIError as exc:
                step = poll.on_error(exc, time.monotonic())
            else:
                step = poll.on_task(task, time.monotonic())


class AsyncTasks(BaseTasks["AsyncMountsea"]):
    """``client.<service>.tasks``: read one service's tasks, or wait for them."""

    async def get(self, task_id: str) -> Task:
        """The task as it is now; transient failures are retried ``max_retries`` times."""
        return await self._client._run(self._get_poll(task_id), self._service, task_id, None)

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | float | None = None,
        on_update: Callable[[Task], object] | None = None,
        raise_on_failure: bool = True,
    ) -> Task:
        """Poll until the task is terminal and return it.

        ``timeout`` (seconds, None for none) is one deadline for every poll, retry and
        pause. ``poll`` is a `PollPolicy` or a fixed interval in seconds.
        ``on_update(task)`` sees each status change, the first observation included.
        Raises `TaskFailedError` for a failed, cancelled or timed-out task (unless
        ``raise_on_failure=False``) and `WaitTimeoutError` when the deadline passes.
        """
        machine = self._wait_poll(task_id, timeout, poll, raise_on_failure)
        return await self._client._run(machine, self._service, task_id, on_update)

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> AsyncIterator[Task]:
        """`AsyncMountsea.as_completed` for this service's task ids."""
        return self._client.as_completed(
            self._refs(task_ids), timeout=timeout, poll=poll, max_concurrency=max_concurrency, on_update=on_update
        )

    async def wait_all(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> list[Task]:
        """`AsyncMountsea.wait_all` for this service's task ids, in input order."""
        return await self._client.wait_all(
            self._refs(task_ids), timeout=timeout, poll=poll, max_concurrency=max_concurrency, on_update=on_update
        )


class AsyncServiceClient:
    """``client.producer`` or ``client.xai``: one service's resources."""

    def __init__(self, client: AsyncMountsea, service: Service) -> None:
        self.tasks = AsyncTasks(client, service)

    def __repr__(self) -> str:
        return f"<AsyncServiceClient {self.tasks._service.name!r}>"
