"""What the sync and async clients share: configuration, request building, answer reading.

The shells (`_client.py`, `_async_client.py`) add only the I/O: sending, sleeping, the clock.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Final, Generic, TypeVar

import httpx

from ._errors import APIError, APITimeoutError, ConfigurationError
from ._generated import Service
from ._polling import DEFAULT_POLL_POLICY, Poll, PollPolicy, Rules
from ._response import read_answer, transport_error
from ._scheduler import Scheduler
from ._task import Task, TaskRef

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "BaseClient", "BaseTasks"]

DEFAULT_BASE_URL: Final = "https://api.mountsea.ai"
DEFAULT_TIMEOUT: Final = 30.0  # seconds per request; a wait's deadline clips it further
DEFAULT_WAIT_TIMEOUT: Final = 600.0  # seconds; music takes 30-120 s, so 10 minutes is generous
MAX_REDIRECTS: Final = 5
DEFAULT_MAX_CONCURRENCY: Final = 16  # requests in flight at once in as_completed / wait_all
# Room for max_concurrency=64 on kept-alive connections (httpx keeps 20 by default).
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=64)

logger: Final = logging.getLogger("mountsea")


def _configure_logging() -> None:
    """``MOUNTSEA_LOG=debug`` (or info, warning) sends the ``mountsea`` logger to stderr."""
    level = os.environ.get("MOUNTSEA_LOG", "").strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING"} or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _api_key(api_key: object) -> str:
    key = api_key if api_key is not None else os.environ.get("MOUNTSEA_API_KEY")
    if key is not None and not isinstance(key, str):
        msg = f"api_key must be a str, not {type(key).__name__}"
        raise ConfigurationError(msg)
    if not key or not key.strip():
        msg = "No API key: pass Mountsea(api_key=...) or set the MOUNTSEA_API_KEY environment variable."
        raise ConfigurationError(msg)
    if not key.isascii() or not key.isprintable() or key != key.strip():
        # Never quote the key itself: it may be a real secret with a typo in it.
        msg = "The API key holds whitespace, control or non-ASCII characters; check MOUNTSEA_API_KEY."
        raise ConfigurationError(msg)
    return key


def _base_url(base_url: str | None) -> str:
    raw = base_url if base_url is not None else os.environ.get("MOUNTSEA_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError) as exc:
        # Quoted without its user:password@, which may be real; httpx's reason only when
        # there is none (it may quote a piece of the password), and never chained.
        # Up to the last "@": a password may hold an unencoded "/", "?" or "#".
        userinfo = re.search(r"(?<=//).*@", raw, re.DOTALL) if isinstance(raw, str) else None
        shown = raw if userinfo is None else raw.replace(userinfo[0], "***@", 1)
        reason = str(exc) if userinfo is None else "details withheld: it holds credentials"
        msg = f"base_url {shown!r} is not a valid URL ({reason})"
        raise ConfigurationError(msg) from None
    if url.scheme not in {"http", "https"} or not url.host:
        msg = f"base_url must be an absolute http:// or https:// URL, such as {DEFAULT_BASE_URL!r}"
        raise ConfigurationError(msg)
    if url.userinfo:
        msg = "base_url must not hold credentials (user:password@); pass the API key as api_key"
        raise ConfigurationError(msg)
    if url.query or url.fragment:
        msg = "base_url must not have a query or a fragment"
        raise ConfigurationError(msg)
    return str(url).rstrip("/")


def _timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0 or not math.isfinite(timeout)):
        msg = f"timeout must be a positive number of seconds or None, not {timeout!r}"
        raise ValueError(msg)
    return httpx.Timeout(timeout)


def _deadline_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0 or not math.isfinite(timeout)):
        msg = f"timeout must be a number of seconds >= 0 or None, not {timeout!r}"
        raise ValueError(msg)
    return timeout


def _poll_policy(poll: PollPolicy | float | None) -> PollPolicy:
    if poll is None:
        return DEFAULT_POLL_POLICY
    if isinstance(poll, PollPolicy):
        return poll
    if isinstance(poll, int | float) and not isinstance(poll, bool):
        return PollPolicy.fixed(poll)
    msg = f"poll must be a PollPolicy, a number of seconds or None, not {poll!r}"
    raise ValueError(msg)


def _clip(timeout: httpx.Timeout, budget: float | None) -> httpx.Timeout:
    """``timeout`` with every phase cut to the ``budget`` left before a deadline."""
    if budget is None:
        return timeout

    def cut(value: float | None) -> float:
        return budget if value is None else min(value, budget)

    return httpx.Timeout(
        connect=cut(timeout.connect), read=cut(timeout.read), write=cut(timeout.write), pool=cut(timeout.pool)
    )


class BaseClient:
    """Configuration and the I/O-free halves of every request."""

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        http_client: object,
        http_client_type: type,
    ) -> None:
        if http_client is not None and not isinstance(http_client, http_client_type):
            msg = f"http_client must be an {http_client_type.__module__}.{http_client_type.__name__}, not {type(http_client).__name__}"
            raise ConfigurationError(msg)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            msg = f"max_retries must be an int >= 0, not {max_retries!r}"
            raise ValueError(msg)
        # httpx.Headers prints "[secure]" for Authorization in any repr.
        self._owns_http = http_client is None
        self._headers = httpx.Headers({"Authorization": f"Bearer {_api_key(api_key)}", "Accept": "application/json"})
        self.base_url = _base_url(base_url)
        self.timeout = _timeout(timeout)
        self.max_retries = max_retries
        self._rng = random.Random()
        _configure_logging()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def _poll(
        self,
        service: Service,
        task_id: str,
        *,
        now: float,
        until_done: bool = False,
        timeout: float | None = None,
        poll: PollPolicy | float | None = None,
        raise_on_failure: bool = True,
    ) -> Poll:
        """The state machine for one get (``until_done=False``) or wait."""
        ref = TaskRef(service.name, task_id)  # checks the id
        timeout = _deadline_timeout(timeout)
        rules = Rules(
            until_done=until_done,
            deadline=None if timeout is None else now + timeout,
            policy=_poll_policy(poll),
            max_retries=self.max_retries,
            raise_on_failure=raise_on_failure,
            rng=self._rng,
        )
        return Poll(rules, ref)

    def _scheduler(
        self,
        refs: Iterable[TaskRef | Task],
        *,
        now: float,
        timeout: float | None,
        poll: PollPolicy | float | None,
        max_concurrency: int,
        keep_results: bool = False,
    ) -> Scheduler:
        """The fan-out core for one `as_completed` or `wait_all` call."""
        if isinstance(refs, TaskRef | Task | str):
            msg = "refs must be an iterable of TaskRef or Task objects, not a single one"
            raise ValueError(msg)
        return Scheduler(
            refs,
            now=now,
            timeout=_deadline_timeout(timeout),
            policy=_poll_policy(poll),
            max_concurrency=max_concurrency,
            rng=self._rng,
            keep_results=keep_results,
        )

    def _request(self, service: Service, task_id: str, budget: float | None) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` to read one task.

        Raises `APITimeoutError` when the ``budget`` left before a deadline is already spent.
        """
        if budget is not None and budget <= 0:
            msg = f"{service.name} task {task_id!r}: no time left before the deadline to send the request"
            raise APITimeoutError(msg, service=service.name, task_id=task_id)
        generated = service.request_kwargs(task_id=task_id)  # method, path and query, as the spec says
        return {
            "method": generated["method"].upper(),
            "url": self.base_url + generated["url"],
            "params": generated.get("params"),
            # A client we built carries the headers already (cheaper than merging them
            # into every request); one passed in gets them per request, left unchanged.
            "headers": None if self._owns_http else self._headers,
            "timeout": _clip(self.timeout, budget),
            # httpx drops Authorization when a redirect leaves the origin.
            "follow_redirects": True,
        }

    def _answer(self, service: Service, task_id: str, response: httpx.Response) -> Task:
        if logger.isEnabledFor(logging.DEBUG):  # the arguments cost more than the call
            path = response.request.url.path
            logger.debug("GET %s taskId=%s -> %s in %s", path, task_id, response.status_code, _elapsed(response))
        # The key is passed along so that an answer echoing it (a proxy error page that
        # quotes the request, say) cannot carry it into an error message or body.
        secret = self._headers["authorization"].removeprefix("Bearer ").encode()
        try:
            return read_answer(
                service, task_id, response.status_code, response.headers, response.content, time.time(), secret=secret
            )
        finally:
            _release(response)

    def _overdue(self, service: Service, task_id: str) -> APITimeoutError:
        """The error for a request still unanswered when its deadline came."""
        message = f"{service.name} task {task_id!r}: no complete answer before the deadline"
        return APITimeoutError(message, service=service.name, task_id=task_id)

    def _failed(self, exc: httpx.HTTPError, service: Service, task_id: str) -> APIError:
        error = transport_error(exc, service, task_id)
        logger.debug("GET %s task %r failed: %s", service.name, task_id, error)
        return error


ClientT = TypeVar("ClientT", bound=BaseClient)


class BaseTasks(Generic[ClientT]):
    """What ``client.<service>.tasks`` is on either front end, short of the I/O."""

    def __init__(self, client: ClientT, service: Service) -> None:
        self._client = client
        self._service = service

    def __repr__(self) -> str:
        return f"<{type(self).__name__} service={self._service.name!r}>"

    def _get_poll(self, task_id: str) -> Poll:
        return self._client._poll(self._service, task_id, now=time.monotonic())

    def _wait_poll(
        self, task_id: str, timeout: float | None, poll: PollPolicy | float | None, raise_on_failure: bool
    ) -> Poll:
        return self._client._poll(
            self._service,
            task_id,
            now=time.monotonic(),
            until_done=True,
            timeout=timeout,
            poll=poll,
            raise_on_failure=raise_on_failure,
        )

    def _refs(self, task_ids: Iterable[str]) -> list[TaskRef]:
        if isinstance(task_ids, str):
            msg = "task_ids must be an iterable of ids, not a single str"
            raise ValueError(msg)
        return [TaskRef(self._service.name, task_id) for task_id in task_ids]


def _elapsed(response: httpx.Response) -> str:
    try:
        return f"{response.elapsed.total_seconds() * 1000:.0f} ms"
    except RuntimeError:  # an answer made already read (a MockTransport's, say) is never timed
        return "? ms"


_SPENT: Final = httpx.ByteStream(b"")


def _release(response: httpx.Response) -> None:
    # httpx 0.28 links each response and its body stream both ways (encode/httpx#3733), so
    # a finished request lingers, with its connection-pool bookkeeping, until the cyclic
    # GC runs; in a batch that garbage grows with the number of tasks. The body is read
    # and the stream closed by now: unlinking it lets reference counting free it all at once.
    for spent in (*response.history, response):
        spent.stream = _SPENT
