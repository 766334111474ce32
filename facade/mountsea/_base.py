"""What every client shares: configuration, the public methods, and the seam to its driver.

The public API is written once, here. Every call becomes a `Scheduler` (the pure core), which a *driver*, a
`BaseClient` subclass (`Mountsea`: threads, `AsyncMountsea`: asyncio), runs; a driver provides only the I/O:

* ``_httpx_kind``, the httpx client class it accepts as ``http_client`` besides a `DefaultAioHttpClient`,
  and ``_open(http_client, http2)``: build what it sends with (no I/O yet);
* ``_stream``, ``_one``, ``_collect`` (scheduler, on_update): the scheduler's loop (plan, send each `Request`,
  wait for each `Answer` or the `APIError` of a failure with no answer, `_record` it) with its clock and its
  way of waiting, as a stream, a Task or a list;
* closing (``close()`` or ``aclose()``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Generic, NoReturn, TypeVar

import httpx

from ._aiohttp import DefaultAioHttpClient
from ._errors import APIError, ConfigurationError
from ._pacing import Pacer
from ._response import Answer, Request, read_answer
from ._retry import DEFAULT_POLL_POLICY, PollPolicy
from ._scheduler import Call, ClientState, Scheduler, Tracked
from ._task import SERVICES, Service, Task, TaskRef

DEFAULT_BASE_URL: Final = "https://api.mountsea.ai"
DEFAULT_TIMEOUT: Final = 30.0  # seconds per request; a wait's deadline cuts it further
DEFAULT_WAIT_TIMEOUT: Final = 600.0  # seconds; music takes 30-120 s, so 10 minutes is generous
MAX_REDIRECTS: Final = 5
DEFAULT_MAX_CONCURRENCY: Final = 16  # requests in flight at once in as_completed / wait_all
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=64)  # room for max_concurrency=64

logger: Final = logging.getLogger("mountsea")

OneT = TypeVar("OneT")  # what get() and wait() return: a Task, or an awaitable of one
AllT = TypeVar("AllT")  # what wait_all() returns: a list of Tasks, or an awaitable of one
StreamT = TypeVar("StreamT")  # what as_completed() returns: an iterator or an async iterator
HttpT = TypeVar("HttpT")
HttpxT = TypeVar("HttpxT", httpx.Client, httpx.AsyncClient)  # the HTTP clients the driver accepts
OnUpdate = Callable[[Task], object] | None


def _configure_logging() -> None:
    """``MOUNTSEA_LOG=debug`` (or info, warning) sends the ``mountsea`` logger to stderr."""
    level = os.environ.get("MOUNTSEA_LOG", "").strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING"} or logger.handlers:
        return
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _reject(name: str, value: object, what: str) -> NoReturn:
    msg = f"{name} must be {what}, not {value!r}"
    raise ValueError(msg)


def _number(name: str, value: Any, *, strict: bool = False) -> Any:
    """``value`` if it is None or a finite number >= 0 (> 0 with ``strict``)."""
    finite = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf
    if value is not None and not (finite and (value or not strict)):
        _reject(name, value, f"a finite number {'>' if strict else '>='} 0 or None")
    return value


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _reject(name, value, f"an int >= {low}")
    return value


def _api_key(api_key: object) -> str:
    key = api_key if api_key is not None else os.environ.get("MOUNTSEA_API_KEY")
    if key is not None and not isinstance(key, str):
        msg = f"api_key must be a str, not {type(key).__name__}"
    elif not key or not key.strip():
        msg = "No API key: pass Mountsea(api_key=...) or set the MOUNTSEA_API_KEY environment variable."
    elif not key.isascii() or not key.isprintable() or key != key.strip():
        # Never quote the key itself: it may be a real secret with a typo in it.
        msg = "The API key holds whitespace, control or non-ASCII characters; check MOUNTSEA_API_KEY."
    else:
        return key
    raise ConfigurationError(msg)


def _base_url(base_url: object) -> str:
    raw = base_url if base_url is not None else os.environ.get("MOUNTSEA_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(raw, str):
        msg = f"base_url must be a str, not {type(raw).__name__}"
        raise ConfigurationError(msg)
    # Quoted with everything up to its last "@" masked: a password may hold "/", "?" or "#".
    userinfo = re.search(r"(?<=//).*@", raw, re.DOTALL)
    shown = repr(raw if userinfo is None else raw.replace(userinfo[0], "***@", 1))
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        # httpx's reason only without credentials (it may quote a piece of the password).
        reason = str(exc) if userinfo is None else "details withheld: it holds credentials"
        msg = f"base_url {shown} is not a valid URL ({reason})"
        raise ConfigurationError(msg) from None
    problems = {
        f"must be an absolute http:// or https:// URL, such as {DEFAULT_BASE_URL!r}, not {shown}": (
            url.scheme not in {"http", "https"} or not url.host or any(ch.isspace() for ch in raw)
        ),
        f"{shown} has a port out of range (1-65535)": url.port is not None and not 0 < url.port < 65536,
        "must not hold credentials (user:password@); pass the API key as api_key": bool(url.userinfo),
        "must not have a query or a fragment": bool(url.query or url.fragment),
    }
    for problem in (problem for problem, found in problems.items() if found):
        msg = f"base_url {problem}"
        raise ConfigurationError(msg)
    return str(url).rstrip("/")


def new_httpx(kind: type[HttpxT], headers: httpx.Headers, *, http2: bool = False) -> HttpxT:
    """An httpx client as the drivers build their own (``http2`` needs the ``h2`` package)."""
    try:
        return kind(headers=headers, max_redirects=MAX_REDIRECTS, limits=DEFAULT_LIMITS, http2=http2)
    except ImportError:
        msg = "http2=True needs the h2 package: pip install 'mountsea[http2]'"
        raise ConfigurationError(msg) from None


class BaseClient(Generic[OneT, AllT, StreamT, HttpT]):
    """Configuration and the public methods; a driver adds the I/O. Calls running at once share one `ClientState`."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        http_client: HttpT | None = None,
        http2: bool = False,
        max_rate: float | None = None,
    ) -> None:
        self.max_retries = _count("max_retries", max_retries, 0)
        self.max_rate = _number("max_rate", max_rate, strict=True)
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(_number("timeout", timeout, strict=True))
        self.timeout = timeout
        # httpx.Headers prints "[secure]" for Authorization in any repr.
        self._headers = httpx.Headers({"Authorization": f"Bearer {_api_key(api_key)}", "Accept": "application/json"})
        self.base_url = _base_url(base_url)
        self._state = ClientState(pacer=Pacer(self.max_rate))
        _configure_logging()
        if not isinstance(http2, bool):  # pragma: no cover - typed as bool: a caller's mistake
            _reject("http2", http2, "True or False")
        if isinstance(http_client, DefaultAioHttpClient):  # either driver may send with it
            http_client._bind(self._headers, MAX_REDIRECTS)
        elif http_client is not None and not isinstance(http_client, self._httpx_kind):
            msg = f"http_client must be an httpx.{self._httpx_kind.__name__}, not {type(http_client).__name__}"
            raise ConfigurationError(msg)
        self._open(http_client, http2)
        self.producer: ServiceClient[OneT, AllT, StreamT] = ServiceClient(self, SERVICES["producer"])
        self.xai: ServiceClient[OneT, AllT, StreamT] = ServiceClient(self, SERVICES["xai"])

    def __repr__(self) -> str:
        rate = "" if self.max_rate is None else f", max_rate={self.max_rate}"
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries}{rate})"

    def as_completed(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: OnUpdate = None,
    ) -> StreamT:
        """Yield each task's final `Task` as soon as it is terminal, in completion order.

        ``refs`` mixes `TaskRef` and `Task` objects of both services; a task given twice is yielded once, a failed
        one like any other (``task.succeeded`` tells). ``timeout`` (seconds, None for none) is one deadline for the
        batch; `WaitTimeoutError` then lists the ``pending`` tasks, ready to be passed back in. A task that cannot
        be read (a 404...) does not stop the others: `BatchError` reports it once they are done; 401, 403 and a
        server never reached stop the batch at once. A yielded task is forgotten: a stream of any length holds only
        the unfinished. At most ``max_concurrency`` requests are in flight; one still out at the deadline is given up.
        """
        return self._stream(self._batch(refs, timeout, poll, max_concurrency, on_update), on_update)

    def wait_all(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_update: OnUpdate = None,
    ) -> AllT:
        """Wait for every task and return their final `Task` objects, one per input, in input order.

        Same arguments and errors as `as_completed`; the errors' ``finished`` attribute holds the tasks that did finish.
        """
        return self._collect(self._batch(refs, timeout, poll, max_concurrency, on_update, keep=True), on_update)

    # The driver's part (see the module docstring).
    _httpx_kind: type[httpx.Client | httpx.AsyncClient]
    _open: Callable[[Any, bool], None]
    _stream: Callable[[Scheduler, OnUpdate], StreamT]
    _collect: Callable[[Scheduler, OnUpdate], AllT]
    _one: Callable[[Scheduler, OnUpdate], OneT]

    def _batch(self, refs: object, timeout: Any, poll: Any, cap: Any, on_update: Any, keep: bool = False) -> Scheduler:
        if isinstance(refs, TaskRef | Task | str) or not isinstance(refs, Iterable):
            _reject("refs", refs, "an iterable of TaskRef or Task objects")
        call = self._call(timeout, poll, on_update, until_done=True, single=False)
        cap = _count("max_concurrency", cap, 1)
        return Scheduler(
            refs, call=call, state=self._state, now=time.monotonic(), max_concurrency=cap, keep_results=keep
        )

    def _call(self, timeout: Any, poll: Any, on_update: object = None, **rules: Any) -> Call:
        for name, value in rules.items():
            if not isinstance(value, bool):
                _reject(name, value, "True or False")
        if on_update is not None and not callable(on_update):
            _reject("on_update", on_update, "a callable or None")
        timeout = _number("timeout", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if poll is None:
            poll = DEFAULT_POLL_POLICY
        elif isinstance(poll, int | float) and not isinstance(poll, bool):
            poll = PollPolicy.fixed(poll)
        elif not isinstance(poll, PollPolicy):
            _reject("poll", poll, "a PollPolicy, a number of seconds or None")
        return Call(deadline=deadline, policy=poll, max_retries=self.max_retries, one_round=timeout == 0, **rules)

    def _request(self, ref: TaskRef, budget: float | None) -> Request:
        """The GET for ``ref``, path and query as generated; each phase's timeout cut to the ``budget`` left."""
        generated = SERVICES[ref.service].request_kwargs(task_id=ref.id)
        url = f"{self.base_url}{generated['url']}?{urllib.parse.urlencode(generated['params'])}"
        timeout = self.timeout
        if budget is not None:
            timeout = httpx.Timeout(
                **{k: budget if v is None else min(v, budget) for k, v in timeout.as_dict().items()}
            )
        return Request(ref.service, ref.id, url, timeout, budget)

    def _record(
        self, scheduler: Scheduler, tracked: Tracked, outcome: Answer | BaseException, on_update: OnUpdate
    ) -> None:
        """Hand an outcome to the core, then log what it asks and report a status change."""
        headers: Mapping[str, str] | None = None
        if isinstance(outcome, APIError):
            logger.debug("GET %s failed: %s", tracked.ref.label, outcome)
            result: Task | APIError = outcome
        elif isinstance(outcome, BaseException):
            raise outcome  # a bug in a worker thread surfaces in the caller's
        else:
            headers = outcome.headers
            if logger.isEnabledFor(logging.DEBUG):
                took = "?" if outcome.elapsed is None else f"{outcome.elapsed * 1000:.0f}"
                path = SERVICES[tracked.ref.service].request_kwargs(task_id="")["url"]
                logger.debug("GET %s taskId=%s -> %s in %s ms", path, tracked.ref.id, outcome.status_code, took)
            # With the key, an answer echoing it (a proxy's error page, say) cannot carry it into an error or its body.
            secret = self._headers["authorization"].removeprefix("Bearer ").encode()
            try:
                result = read_answer(tracked.ref, outcome, time.time(), secret=secret)
            except APIError as exc:
                result = exc
        update = scheduler.record(tracked, result, time.monotonic(), headers)
        for level, message, args, extra in scheduler.log:
            logger.log(level, message, *args, extra=extra)
        scheduler.log.clear()
        if update is not None and on_update is not None:
            on_update(update)


class Tasks(Generic[OneT, AllT, StreamT]):
    """``client.<service>.tasks``: read one service's tasks, or wait for them."""

    def __init__(self, client: BaseClient[OneT, AllT, StreamT, Any], service: Service) -> None:
        self._client, self._service = client, service

    def __repr__(self) -> str:
        return f"<Tasks service={self._service.name!r}>"

    def get(self, task_id: str) -> OneT:
        """The task as it is now; transient failures are retried ``max_retries`` times."""
        return self._run(task_id, None, None, None, until_done=False)

    def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll: PollPolicy | float | None = None,
        on_update: OnUpdate = None,
        raise_on_failure: bool = True,
    ) -> OneT:
        """Poll until the task is terminal and return it.

        ``timeout`` (seconds, None for none) is one deadline for every poll, retry and pause; ``timeout=0`` sends one
        request and returns the task only if it is terminal. ``poll`` is a `PollPolicy` or a fixed interval in seconds.
        ``on_update(task)`` sees each status change, the first observation included. Raises `TaskFailedError` for a
        failed, cancelled or timed-out task (unless ``raise_on_failure=False``), `WaitTimeoutError` (with the last
        ``task`` seen) at the deadline, and `APIConnectionError` at once if the server is never reached.
        """
        return self._run(task_id, timeout, poll, on_update, until_done=True, raise_on_failure=raise_on_failure)

    def as_completed(self, task_ids: Iterable[str], **options: Any) -> StreamT:
        """The client's `as_completed` (same options) over this service's task ids."""
        return self._client.as_completed(self._refs(task_ids), **options)

    def wait_all(self, task_ids: Iterable[str], **options: Any) -> AllT:
        """The client's `wait_all` (same options) over this service's task ids, in input order."""
        return self._client.wait_all(self._refs(task_ids), **options)

    def _run(self, task_id: str, timeout: Any, poll: Any, on_update: OnUpdate, **rules: bool) -> OneT:
        call = self._client._call(timeout, poll, on_update, single=True, **rules)
        ref = TaskRef(self._service.name, task_id)  # checks the id
        scheduler = Scheduler([ref], call=call, state=self._client._state, now=time.monotonic())
        return self._client._one(scheduler, on_update)

    def _refs(self, task_ids: Iterable[str]) -> list[TaskRef]:
        if isinstance(task_ids, str):
            msg = "task_ids must be an iterable of ids, not a single str"
            raise ValueError(msg)
        return [TaskRef(self._service.name, task_id) for task_id in task_ids]


class ServiceClient(Generic[OneT, AllT, StreamT]):
    """``client.producer`` or ``client.xai``: one service's resources."""

    def __init__(self, client: BaseClient[OneT, AllT, StreamT, Any], service: Service) -> None:
        self.tasks = Tasks(client, service)

    def __repr__(self) -> str:
        return f"<ServiceClient {self.tasks._service.name!r}>"
