"""The translation boundary: an HTTP answer or an httpx failure becomes a Task or a typed error.

Nothing the generated code, ``json`` or httpx raises gets past this module untranslated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx

from ._errors import APIConnectionError, APIError, APITimeoutError, ResponseValidationError, status_error
from ._generated import SERVICES
from ._retry import parse_retry_after
from ._task import Task, TaskRef, parse_task

__all__ = [
    "Answer",
    "Request",
    "answer_of",
    "connection_error",
    "read_answer",
    "redirect_error",
    "timeout_error",
    "transport_error",
]


@attrs.frozen
class Request:
    """One GET of one task, as every driver sends it."""

    service: str
    task_id: str
    url: str  # absolute, query included: "http://127.0.0.1:8080/producer/tasks?taskId=t-1"
    timeout: httpx.Timeout  # per phase (connect, read, write, pool), already cut to the budget
    budget: float | None  # seconds the whole request may take (None: only `timeout` bounds it)

    @property
    def origin(self) -> str:
        """``host:port``, as connection errors name the server tried."""
        url = httpx.URL(self.url)
        return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"

    @property
    def label(self) -> str:
        """The task as messages name it, e.g. ``producer task 't-1'``."""
        return f"{self.service} task {self.task_id!r}"


@attrs.frozen
class Answer:
    """What a driver got back: an HTTP answer of any status."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive lookups (httpx.Headers, aiohttp's CIMultiDictProxy)
    content: bytes
    elapsed: float | None = None  # seconds, for the debug log, when the driver timed it


def connection_error(request: Request, detail: str, *, connecting: bool) -> APIConnectionError:
    """No answer: ``connecting`` when no connection was ever made (refused, DNS, TLS, connect timeout)."""
    what = "cannot connect to" if connecting else "with"
    message = f"{request.label}: connection error {what} {request.origin} ({detail})"
    return APIConnectionError(message, service=request.service, task_id=request.task_id, connecting=connecting)


def timeout_error(request: Request, detail: str, *, connecting: bool = False) -> APITimeoutError:
    """The request ran out of time (``connecting``: before a connection was made)."""
    message = f"{request.label}: request to {request.origin} timed out ({detail})"
    return APITimeoutError(message, service=request.service, task_id=request.task_id, connecting=connecting)


def redirect_error(request: Request, detail: str) -> APIError:
    """A redirect loop, which will not fix itself: an APIError, never retried."""
    message = f"{request.label}: too many redirects from {request.origin} ({detail})"
    return APIError(message, service=request.service, task_id=request.task_id)


_EXCERPT = 200  # characters of a body quoted in an error message
# Keys this long never occur in an answer by chance, so a successful answer is masked
# too; a shorter (test) key is masked only where an error quotes the answer.
_MIN_SECRET = 8


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON has no infinity, and we would print invalid JSON
        msg = f"number out of range: {text[:20]}"
        raise ValueError(msg)
    return value


def _no_constants(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _decode(content: bytes) -> Any:
    """The JSON body, or raise ValueError (bad JSON, bad UTF-8, NaN or infinite numbers) or
    RecursionError (deep nesting)."""
    return json.loads(content, parse_float=_finite, parse_constant=_no_constants)


def _excerpt(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."


def read_answer(ref: TaskRef, answer: Answer, now: float, *, secret: bytes = b"") -> Task:
    """The Task in a 2xx ``answer``, or raise the typed error the answer stands for.

    ``now`` is the Unix time, for a ``Retry-After`` given as an HTTP date. Wherever an
    error would quote the answer, ``secret`` (the API key) is replaced by ``[secure]``.
    """
    where, service, task_id = ref.label, SERVICES[ref.service], ref.id
    status_code, headers, content = answer.status_code, answer.headers, answer.content
    if 200 <= status_code <= 299:
        try:
            payload = _decode(content)
            if len(secret) >= _MIN_SECRET:  # a task quoting the key (in errorMessage, say) keeps it out of sight
                payload = _redact_decoded(payload, content, secret)
        except (ValueError, RecursionError) as exc:
            text = _quotable(content, secret)[:_EXCERPT].decode("utf-8", "replace")
            message = f"{where}: the {status_code} answer is not JSON: {_excerpt(text) or '(empty body)'}"
            raise ResponseValidationError(message, body=text, service=service.name, task_id=task_id) from exc
        try:
            return parse_task(service, payload, task_id=task_id)
        except ResponseValidationError:
            if secret and secret in content:
                message = f"{where}: invalid TaskResultDto (details withheld: the answer quotes the API key)"
                raise ResponseValidationError(message, service=service.name, task_id=task_id) from None
            raise

    try:
        body: Any = _redact_decoded(_decode(content), content, secret)
    except (ValueError, RecursionError):
        body = _quotable(content, secret).decode("utf-8", "replace")
    trace_id = body.get("traceId") if isinstance(body, dict) else None
    message = f"{where}: HTTP {status_code}: {_excerpt(body) or '(empty body)'}"
    raise status_error(status_code)(
        message,
        status_code=status_code,
        body=body,
        request_id=_redact_text(headers.get("x-request-id"), secret),
        trace_id=trace_id if isinstance(trace_id, str) else None,
        retry_after=parse_retry_after(headers, now),
        service=service.name,
        task_id=task_id,
    )


def _redact(content: bytes, secret: bytes) -> bytes:
    return content.replace(secret, b"[secure]") if secret else content


def _redact_text(text: str | None, secret: bytes) -> str | None:
    return text.replace(secret.decode(), "[secure]") if text and secret else text


_JSON_ESCAPE: Final = re.compile(rb"\\u([0-9a-fA-F]{4})|\\(.)")


def _quotable(content: bytes, secret: bytes) -> bytes:
    """A body that is not JSON, fit to quote: the key masked, or the whole withheld if it
    holds the key JSON-escaped (which `_redact_decoded` cannot see through here)."""
    content = _redact(content, secret)
    if not secret or b"\\" not in content:
        return content

    def unescape(match: re.Match[bytes]) -> bytes:
        code = match[1]
        return chr(int(code, 16)).encode("utf-8", "replace") if code else match[2]

    if secret in _JSON_ESCAPE.sub(unescape, content):
        return b"[withheld: the answer quotes the API key]"
    return content


# The escapes that could hide a printable key from a byte-level search: \uXXXX, \/, \", \\.
_HIDING_ESCAPE: Final = re.compile(rb'\\[u/"\\]')


def _redact_decoded(payload: Any, content: bytes, secret: bytes) -> Any:
    """The decoded ``payload`` of ``content`` with the key masked wherever it holds it,
    written plainly or JSON-escaped (``\\/``, ``\\u0073``).

    Masked after decoding, not in the bytes: a mask in the bytes could cut an escape in
    two and break valid JSON. Raises ValueError or RecursionError when it cannot check.
    """
    if not secret or (secret not in content and not _HIDING_ESCAPE.search(content)):
        return payload  # the common case: nothing to look at again
    # Canonical JSON writes the key as a byte-level search would find it.
    key = json.dumps(secret.decode(), ensure_ascii=False)[1:-1]
    text = json.dumps(payload, ensure_ascii=False)
    return json.loads(text.replace(key, "[secure]")) if key in text else payload


def transport_error(exc: httpx.HTTPError, request: Request) -> APIError:
    """The typed error for an httpx failure (no usable answer came back)."""
    detail = str(exc) or type(exc).__name__  # httpx messages name the URL at most, never headers
    # A connect timeout never reached the server, like a refused connection.
    connecting = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    if isinstance(exc, httpx.TooManyRedirects):
        error = redirect_error(request, detail)
    elif isinstance(exc, httpx.TimeoutException):
        error = timeout_error(request, detail, connecting=connecting)
    else:
        error = connection_error(request, detail, connecting=connecting)
    error.__cause__ = exc
    return error


def answer_of(response: httpx.Response) -> Answer:
    """The plain values of an httpx answer, its links to the connection pool cut."""
    try:
        elapsed: float | None = response.elapsed.total_seconds()
    except RuntimeError:  # an answer made already read (a MockTransport's, say) is never timed
        elapsed = None
    # httpx 0.28 links each response and its body stream both ways (encode/httpx#3733), so
    # a finished request lingers until the cyclic GC runs; in a batch that garbage grows
    # with the number of tasks. Unlinking the read stream lets reference counting free it.
    for spent in (*response.history, response):
        spent.stream = _SPENT
    return Answer(response.status_code, response.headers, response.content, elapsed)


_SPENT: Final = httpx.ByteStream(b"")
