"""`Mountsea`, the synchronous client: `httpx.Client` and `time.sleep` around the polling core."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import httpx

from ._base import DEFAULT_TIMEOUT, DEFAULT_WAIT_TIMEOUT, MAX_REDIRECTS, BaseClient
from ._errors import APIError
from ._generated import SERVICES, Service
from ._polling import Done, Fail, Poll, PollPolicy
from ._task import Task

__all__ = ["Mountsea", "ServiceClient", "Tasks"]


class Mountsea(BaseClient):
    """The synchronous Mountsea client.

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
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(max_redirects=MAX_REDIRECTS)
        self.producer = ServiceClient(self, SERVICES["producer"])
        self.xai = ServiceClient(self, SERVICES["xai"])

    def close(self) -> None:
        """Close the HTTP connections, unless the ``http_client`` was passed in."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fetch(self, service: Service, task_id: str, budget: float | None) -> Task:
        try:
            response = self._http.request(**self._request(service, task_id, budget))
        except httpx.HTTPError as exc:
            raise self._failed(exc, service, task_id) from exc
        return self._answer(service, task_id, response)

    def _run(self, poll: Poll, service: Service, task_id: str, on_update: Callable[[Task], object] | None) -> Task:
        step = poll.start(time.monotonic())
        while True:
            if step.update is not None and on_update is not None:
                on_update(step.update)
            if isinstance(step, Done):
                return step.task
            if isinstance(step, Fail):
                raise step.error
            if step.delay > 0:
                time.sleep(step.delay)
            try:
                task = self._fetch(service, task_id, step.budget)
            except APIError as exc:
                step = poll.on_error(exc, time.monotonic())
            else:
                step = poll.on_task(task, time.monotonic())


class Tasks:
    """``client.<service>.tasks``: read one service's tasks, or wait for them."""

    def __init__(self, client: Mountsea, service: Service) -> None:
        self._client = client
        self._service = service

    def __repr__(self) -> str:
        return f"<Tasks service={self._service.name!r}>"

    def get(self, task_id: str) -> Task:
        """The task as it is now; transient failures are retried ``max_retries`` times."""
        poll = self._client._poll(self._service, task_id, now=time.monotonic())
        return self._client._run(poll, self._service, task_id, None)

    def wait(
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
        machine = self._client._poll(
            self._service,
            task_id,
            now=time.monotonic(),
            until_done=True,
            timeout=timeout,
            poll=poll,
            raise_on_failure=raise_on_failure,
        )
        return self._client._run(machine, self._service, task_id, on_update)


class ServiceClient:
    """``client.producer`` or ``client.xai``: one service's resources."""

    def __init__(self, client: Mountsea, service: Service) -> None:
        self.tasks = Tasks(client, service)

    def __repr__(self) -> str:
        return f"<ServiceClient {self.tasks._service.name!r}>"
