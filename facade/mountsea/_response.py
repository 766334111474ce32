"""The translation boundary: answers and httpx failures become Tasks or typed errors; nothing raw gets past it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import httpcore
import httpx

from ._errors import APIConnectionError, APIError, APITimeoutError, ResponseValidationError, status_error
from ._retry import parse_retry_after
from ._task import SERVICES, Task, TaskRef, parse_task


@attrs.frozen
class Request:
    """One GET of one task, as every driver sends it."""

    service: str
    task_id: str
    url: str  # absolute, query included: "http://127.0.0.1:8080/producer/tasks?taskId=t-1"
    timeout: httpx.Timeout  # per phase (connect, read, write, pool), already cut to the budget
    budget: float | None  # seconds the whole request may take (None: only `timeout` bounds it)


@attrs.frozen
class Answer:
    """What a driver got back: an HTTP answer of any status."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive lookups (httpx.Headers, aiohttp's CIMultiDictProxy)
    content: bytes
    elapsed: float | None = None  # seconds, for the debug log, when the driver timed it


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """Scheme, host and port, the scheme's default port if the URL names none."""
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def request_error(
    request: Request, detail: str, *, kind: type[APIError] = APIConnectionError, connecting: bool = False
) -> APIError:
    """The error for a request with no usable answer; ``kind`` `APIError` is a redirect loop, never retried."""
    _, host, port = origin(httpx.URL(request.url))
    where = f"{host}:{port}"
    if kind is APIConnectionError:
        what = f"connection error {'cannot connect to' if connecting else 'with'} {where}"
    else:
        what = f"request to {where} timed out" if kind is APITimeoutError else f"too many redirects from {where}"
    message = f"{TaskRef(request.service, request.task_id).label}: {what} ({detail})"
    error = kind(message, service=request.service, task_id=request.task_id)
    if isinstance(error, APIConnectionError):
        error.connecting = connecting
    return error


_EXCERPT = 200  # characters of a body quoted in an error message
# Keys this long never occur in an answer by chance: masked in every answer; a shorter (test) key only in errors.
_MIN_SECRET = 8
# The escapes that could hide a printable key from a plain search: \uXXXX, \/, \", \\.
_HIDING_ESCAPE: Final = re.compile(rb'\\[u/"\\]')
_ESCAPE: Final = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # NaN, Infinity, 1e999: not JSON, and we would print invalid JSON
        msg = f"number out of range: {text[:20]}"
        raise ValueError(msg)
    return value


def _decoded(content: bytes, key: str) -> Any:
    """The JSON body with ``key`` masked wherever it holds it, written plainly or escaped.

    Masked after decoding: a mask in the bytes could cut an escape (``\\u0073``) in two. Raises ValueError (bad JSON
    or UTF-8, NaN or infinite numbers) or RecursionError (deep nesting).
    """
    body = json.loads(content, parse_float=_finite, parse_constant=_finite)
    if not key or (key.encode() not in content and not _HIDING_ESCAPE.search(content)):
        return body  # the common case: nothing to look at again
    text, written = json.dumps(body, ensure_ascii=False), json.dumps(key, ensure_ascii=False)[1:-1]
    return json.loads(text.replace(written, "[secure]")) if written in text else body


def _quotable(text: str, key: str) -> str:
    """Text that is not JSON, fit to quote: ``key`` masked, or all withheld if it holds the key escaped."""
    if not key:
        return text
    text = text.replace(key, "[secure]")
    if "\\" in text and key in _ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], text):
        return "[withheld: the answer quotes the API key]"
    return text


def _excerpt(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."


def read_answer(ref: TaskRef, answer: Answer, now: float, *, secret: bytes = b"") -> Task:
    """The Task in a 2xx ``answer``, or raise the typed error the answer stands for.

    ``now`` is the Unix time, for a ``Retry-After`` given as an HTTP date. Wherever an error would quote the answer,
    ``secret`` (the API key) is replaced by ``[secure]``.
    """
    where, service, task_id = ref.label, SERVICES[ref.service], ref.id
    status_code, headers, content, key = answer.status_code, answer.headers, answer.content, secret.decode()
    ok = 200 <= status_code <= 299
    try:  # a task quoting the key (in errorMessage, say) keeps it out of sight
        body: Any = _decoded(content, key if not ok or len(key) >= _MIN_SECRET else "")
    except (ValueError, RecursionError) as exc:
        body = _quotable(content.decode("utf-8", "replace"), key)
        if ok:
            body = body[:_EXCERPT]
            message = f"{where}: the {status_code} answer is not JSON: {_excerpt(body) or '(empty body)'}"
            raise ResponseValidationError(message, body=body, service=service.name, task_id=task_id) from exc
    if ok:
        try:
            return parse_task(service, body, task_id=task_id)
        except ResponseValidationError:
            if secret and secret in content:
                message = f"{where}: invalid TaskResultDto (details withheld: the answer quotes the API key)"
                raise ResponseValidationError(message, service=service.name, task_id=task_id) from None
            raise

    request_id = headers.get("x-request-id")
    message = f"{where}: HTTP {status_code}: {_excerpt(body) or '(empty body)'}"
    raise status_error(status_code)(
        message,
        status_code=status_code,
        body=body,
        request_id=request_id and _quotable(request_id, key),
        trace_id=body["traceId"] if isinstance(body, dict) and isinstance(body.get("traceId"), str) else None,
        retry_after=parse_retry_after(headers, now),
        service=service.name,
        task_id=task_id,
    )


def transport_error(exc: Exception, request: Request) -> APIError:
    """The typed error for an httpx or httpcore failure (no usable answer came back)."""
    detail = str(exc) or type(exc).__name__  # their messages name the URL at most, never headers
    timed_out = isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException)
    kind: type[APIError] = APITimeoutError if timed_out else APIConnectionError
    if isinstance(exc, httpx.TooManyRedirects):
        kind = APIError
    connecting = isinstance(  # neither reached the server
        exc, httpx.ConnectError | httpx.ConnectTimeout | httpcore.ConnectError | httpcore.ConnectTimeout
    )
    error = request_error(request, detail, kind=kind, connecting=connecting)
    error.__cause__ = exc
    return error


async def closed_with_the_loop(close: Callable[[], Awaitable[object]]) -> AsyncGenerator[None, None]:
    """Started (``await anext(...)``) in the loop a sender's connections belong to, it calls ``close`` when that loop
    shuts down (``shutdown_asyncgens``, at ``asyncio.run``'s end), or when closed itself: no socket left to the GC."""
    try:
        yield
    finally:
        await close()


class AsyncHttpxSender:
    """Requests on an ``httpx.AsyncClient``: the user's, or ours with ``http2=True`` (on a loop for
    both clients: httpcore's sync HTTP/2 connection must not be shared between threads)."""

    def __init__(self, http: httpx.AsyncClient, headers: httpx.Headers | None, *, owned: bool) -> None:
        self.http, self._headers, self._owned = http, headers, owned

    async def send(self, request: Request) -> Answer | APIError:
        try:
            response = await self.http.get(
                request.url, headers=self._headers, timeout=request.timeout, follow_redirects=True
            )
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:  # a URL or host httpx cannot use
            return transport_error(exc, request)
        return answer_of(response)

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()


def answer_of(response: httpx.Response) -> Answer:
    """The plain values of an httpx answer, its links to the connection pool cut."""
    try:
        elapsed: float | None = response.elapsed.total_seconds()
    except RuntimeError:  # an answer made already read (a MockTransport's, say) is never timed
        elapsed = None
    # httpx 0.28 links each response and its body stream both ways (encode/httpx#3733): a finished request lingers
    # until the cyclic GC runs, garbage that grows with a batch. Unlinking the read stream lets refcounting free it.
    for spent in (*response.history, response):
        spent.stream = _SPENT
    return Answer(response.status_code, response.headers, response.content, elapsed)


_SPENT: Final = httpx.ByteStream(b"")
