"""`Mountsea`, the synchronous client: `httpx.Client` and `time.sleep` around the polling core."""

from __future__ import annotations

import contextvars
import os
import queue
import threading
import time
import typing
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import Final, Self

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

__all__ = ["Mountsea", "ServiceClient", "Tasks"]


class Mountsea(BaseClient):
    """The synchronous Mountsea client.

    ``api_key`` defaults to ``$MOUNTSEA_API_KEY`` and ``base_url`` to ``$MOUNTSEA_BASE_URL``,
    then ``https://api.mountsea.ai``. ``timeout`` bounds each request (seconds);
    ``max_retries`` is how often `get()` retries a transient failure. A passed-in
    ``http_client`` is used as is and left open by `close()`.

    A batch's requests, and a ``wait()``'s when it has a deadline, run on the client's
    worker threads (so that a deadline holds however slowly a server answers); `close()`,
    or the client's garbage collection, ends them.
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
        super().__init__(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
            http_client_type=httpx.Client,
        )
        self._http = (
            http_client
            if http_client is not None
            else httpx.Client(headers=self._headers, max_redirects=MAX_REDIRECTS, limits=DEFAULT_LIMITS)
        )
        self._workers = _Workers()  # started by the first batch or wait()
        weakref.finalize(self, self._workers.shutdown)  # a client never closed still ends them
        self.producer = ServiceClient(self, SERVICES["producer"])
        self.xai = ServiceClient(self, SERVICES["xai"])

    def as_completed(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> Iterator[Task]:
        """Yield each task's final `Task` as soon as it is terminal, in completion order.

        ``refs`` mixes `TaskRef` and `Task` objects of both services. Failed tasks are
        yielded like any other (``task.succeeded`` tells). ``timeout`` is one deadline for
        the whole batch: `WaitTimeoutError` then lists the ``pending`` tasks, ready to be
        passed back in. A task that cannot be read (a 404...) does not stop the others:
        `BatchError` reports it once they are all done. 401 and 403 stop the batch at once.
        A task is forgotten once yielded: a stream of any length holds only the unfinished.
        At most ``max_concurrency`` requests are in flight, on as many threads, kept for
        the next batch until `close()`. A request still out at the deadline is given up,
        not stopped: it ends on its thread, within the client's ``timeout``.
        """
        scheduler = self._scheduler(
            refs, now=time.monotonic(), timeout=timeout, poll=poll, max_concurrency=max_concurrency
        )
        return self._drive(scheduler, on_update)

    def wait_all(
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
        for _ in self._drive(scheduler, on_update):
            pass
        return scheduler.results()

    def close(self) -> None:
        """End the batch threads; close the HTTP connections, unless the ``http_client`` was passed in."""
        self._workers.shutdown()
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

    def _fetch_within(self, service: Service, task_id: str, budget: float | None) -> Task:
        """`_fetch`, given up on once ``budget`` seconds have passed (None: no limit).

        httpx's timeouts apply to each read, so a server trickling its answer would outlast
        them: with a deadline, the request runs on a worker thread, left to end on its own.
        """
        if budget is None:
            return self._fetch(service, task_id, budget)
        replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        self._workers.submit(replies, None, partial(self._fetch, service, task_id, budget))
        try:
            _, outcome = replies.get(timeout=_os_wait(max(budget, 0.0)))
        except queue.Empty:
            raise self._overdue(service, task_id) from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _outcome(self, ref: TaskRef, budget: float | None) -> Task | APIError:
        try:
            return self._fetch(SERVICES[ref.service], ref.id, budget)
        except APIError as exc:
            return exc

    def _drive(self, scheduler: Scheduler, on_update: Callable[[Task], object] | None) -> Iterator[Task]:
        replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()  # this batch's answers
        while True:
            yield from scheduler.take_ready()
            now = time.monotonic()
            if scheduler.over(now):
                return
            for tracked in scheduler.due(now):
                self._workers.submit(replies, tracked, partial(self._outcome, tracked.ref, scheduler.budget(now)))
            wakeup = scheduler.wakeup()
            pause = None if wakeup is None else max(0.0, wakeup - now)
            if not scheduler.in_flight:
                time.sleep(_os_wait(pause or 0.0))
                continue
            for tracked, outcome in _answers(replies, timeout=pause):
                update = scheduler.on_outcome(tracked, outcome, time.monotonic())
                if update is not None and on_update is not None:
                    on_update(update)

    def _run(self, poll: Poll, service: Service, task_id: str, on_update: Callable[[Task], object] | None) -> Task:
        step = poll.start(time.monotonic())
        while True:
            if step.update is not None and on_update is not None:
                on_update(step.update)
            if isinstance(step, Done):
                return step.task
            if isinstance(step, Fail):
                raise step.error
            if (pause := step.at - time.monotonic()) > 0:
                time.sleep(_os_wait(pause))
            try:
                task = self._fetch_within(service, task_id, poll.budget(time.monotonic()))
            except APIError as exc:
                step = poll.on_error(exc, time.monotonic())
            else:
                step = poll.on_task(task, time.monotonic())


_Job = tuple["queue.SimpleQueue[_Reply]", Tracked | None, Callable[[], Task | APIError]]
_Reply = tuple[Tracked | None, Task | APIError | BaseException]  # None: a single call's


class _Workers:
    """The client's request threads, shared by its batches; `Mountsea.close` ends them.

    A thread starts only when no worker is idle, so there are never more threads than
    requests in flight at once; between batches they wait for the next one rather than
    being started anew. Each answer goes back through its batch's own queue.

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

    def submit(
        self, replies: queue.SimpleQueue[_Reply], tracked: Tracked | None, call: Callable[[], Task | APIError]
    ) -> None:
        """Run ``call`` (for ``tracked``, in a batch) on a worker; its outcome goes to ``replies``."""
        with self._lock:
            new_thread = not self._idle.acquire(blocking=False)
            if new_thread:
                self._started += 1
            jobs, idle = self._jobs, self._idle
            # The caller's context variables (a tracing span, say) go with the request.
            jobs.put((replies, tracked, partial(contextvars.copy_context().run, call)))
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
        replies, tracked, call = job
        try:
            outcome: Task | APIError | BaseException = call()
        except BaseException as exc:  # handed to the caller's thread, which raises it
            outcome = exc
        idle.release()  # before the reply: the batch may submit its next job on seeing it
        replies.put((tracked, outcome))


# Every pool, to forget its threads in a forked child: they did not survive the fork,
# and a job queued for one of them would wait forever.
_ALL_WORKERS: Final[weakref.WeakSet[_Workers]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for workers in list(_ALL_WORKERS):
        workers._lock = threading.Lock()  # a parent's thread may have held it: none exists here
        workers._forget_threads()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


_LONGEST_WAIT: Final = 1e9  # seconds (~31 years): the clock plus this still fits the OS's time types


def _os_wait(seconds: float) -> float:
    """``seconds``, cut to a wait every OS call accepts, rather than overflow."""
    return min(seconds, _LONGEST_WAIT)


def _answers(replies: queue.SimpleQueue[_Reply], timeout: float | None) -> list[tuple[Tracked, Task | APIError]]:
    """The answers that arrived, waiting up to ``timeout`` seconds for the first."""
    try:
        done = [replies.get(timeout=None if timeout is None else _os_wait(timeout))]
    except queue.Empty:
        return []
    while not replies.empty():
        done.append(replies.get_nowait())
    for _, outcome in done:
        if not isinstance(outcome, Task | APIError):
            raise outcome  # a bug in a worker surfaces in the caller's thread
    return typing.cast(list[tuple[Tracked, Task | APIError]], done)


class Tasks(BaseTasks["Mountsea"]):
    """``client.<service>.tasks``: read one service's tasks, or wait for them."""

    def get(self, task_id: str) -> Task:
        """The task as it is now; transient failures are retried ``max_retries`` times."""
        return self._client._run(self._get_poll(task_id), self._service, task_id, None)

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
        machine = self._wait_poll(task_id, timeout, poll, raise_on_failure)
        return self._client._run(machine, self._service, task_id, on_update)

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> Iterator[Task]:
        """`Mountsea.as_completed` for this service's task ids."""
        return self._client.as_completed(
            self._refs(task_ids), timeout=timeout, poll=poll, max_concurrency=max_concurrency, on_update=on_update
        )

    def wait_all(
        self,
        task_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: Callable[[Task], object] | None = None,
    ) -> list[Task]:
        """`Mountsea.wait_all` for this service's task ids, in input order."""
        return self._client.wait_all(
            self._refs(task_ids), timeout=timeout, poll=poll, max_concurrency=max_concurrency, on_update=on_update
        )


class ServiceClient:
    """``client.producer`` or ``client.xai``: one service's resources."""

    def __init__(self, client: Mountsea, service: Service) -> None:
        self.tasks = Tasks(client, service)

    def __repr__(self) -> str:
        return f"<ServiceClient {self.tasks._service.name!r}>"
