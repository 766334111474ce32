"""The exceptions mountsea raises, all under `MountseaError` (README.md, "Errors", draws the tree).

Bad arguments (an empty task id, a negative timeout) raise the builtin ``ValueError`` before any request is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task, TaskRef

# The exception classes, which `mountsea` exports as they are.
__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "ConfigurationError",
    "MountseaError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "TaskFailedError",
    "WaitTimeoutError",
]


class MountseaError(Exception):
    """The base of every exception mountsea raises on purpose."""


class ConfigurationError(MountseaError, ValueError):
    """The client cannot be built as asked: no API key, or an unusable base URL."""


class APIError(MountseaError):
    """A request for a task did not give a usable Task."""

    def __init__(
        self, message: str, *, body: Any = None, service: str | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.body = body  # the decoded JSON body, or the text when it is not JSON
        self.service = service
        self.task_id = task_id


class APIStatusError(APIError):
    """The API answered with a status code that is not a success."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        retry_after: float | None = None,
        service: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, body=body, service=service, task_id=task_id)
        self.status_code = status_code
        self.request_id = request_id  # the `x-request-id` header, when the answer has one
        self.trace_id = trace_id  # the body's `traceId`, when it has one
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did


class BadRequestError(APIStatusError):
    """400: the request was malformed (for example a missing task id)."""

    status_code: int = 400


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""

    status_code: int = 401


class PermissionDeniedError(APIStatusError):
    """403: the API key may not read this task."""

    status_code: int = 403


class NotFoundError(APIStatusError):
    """404: no task with this id exists for this service."""

    status_code: int = 404


class RateLimitError(APIStatusError):
    """429: too many requests; retried, honouring ``Retry-After``."""

    status_code: int = 429


class ServerError(APIStatusError):
    """Any 5xx answer, non-standard codes such as 520 included; retried."""


class APIConnectionError(APIError):
    """No answer came back: the connection failed, dropped or broke mid-answer.

    ``connecting`` is True when no connection was ever made (refused, DNS, TLS handshake, connect timeout). Messages
    name the host and port tried.
    """

    def __init__(
        self, message: str, *, service: str | None = None, task_id: str | None = None, connecting: bool = False
    ) -> None:
        super().__init__(message, service=service, task_id=task_id)
        self.connecting = connecting


class APITimeoutError(APIConnectionError):
    """The request ran out of time before a full answer arrived."""


class ResponseValidationError(APIError):
    """A 2xx answer whose body is not a valid TaskResultDto."""


class TaskFailedError(MountseaError):
    """The task reached a terminal state other than ``completed``."""

    def __init__(self, task: Task) -> None:
        detail = f": {task.error_message}" if task.error_message else ""
        code = f" (error code {task.error_code})" if task.error_code is not None else ""
        super().__init__(f"{task.service} task {task.id!r} ended {task.raw_status}{detail}{code}")
        self.task = task


class WaitTimeoutError(MountseaError, TimeoutError):
    """The wait's deadline passed before the task (or batch) was done.

    For one task, ``task`` is the last Task seen (None if no answer came). For a batch, ``pending`` lists each
    unfinished task as its last Task seen or its TaskRef (pass them to ``as_completed`` again to resume),
    ``finished`` the tasks that did finish (from ``wait_all``, in input order; none from ``as_completed``, which
    yielded them already), and ``errors`` the tasks that failed with an API error.
    """

    def __init__(
        self,
        message: str,
        *,
        task: Task | None = None,
        pending: Sequence[Task | TaskRef] = (),
        finished: Sequence[Task] = (),
        errors: Mapping[TaskRef, APIError] | None = None,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.pending = list(pending)
        self.finished = list(finished)
        self.errors = dict(errors or {})


class BatchError(MountseaError):
    """Some tasks of a batch could not be read (a 404, an invalid answer...).

    Raised once every other task has finished: ``errors`` maps each such task's TaskRef to its `APIError`. No
    result is lost: ``as_completed`` yielded each finished task; ``wait_all``'s ``finished`` holds them, in input order.
    """

    def __init__(self, errors: Mapping[TaskRef, APIError], *, finished: Sequence[Task] = ()) -> None:
        first = next(iter(errors.values()), None)
        super().__init__(f"{len(errors)} task(s) of the batch could not be read; first: {first}")
        self.errors = dict(errors)
        self.finished = list(finished)


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls for cls in APIStatusError.__subclasses__() if "status_code" in vars(cls)
}


def status_error(status_code: int) -> type[APIStatusError]:
    """The error class for ``status_code``: ServerError for any 5xx, else the class pinning it, or APIStatusError."""
    return ServerError if 500 <= status_code <= 599 else _STATUS_ERRORS.get(status_code, APIStatusError)
