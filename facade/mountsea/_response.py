"""The translation boundary: an HTTP answer or an httpx failure becomes a Task or a typed error.

Nothing the generated code, ``json`` or httpx raises gets past this module untranslated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import httpx

from ._errors import APIConnectionError, APIError, APITimeoutError, ResponseValidationError, status_error
from ._generated import Service
from ._retry import parse_retry_after
from ._task import Task, parse_task

__all__ = [
    "Answer",
    "Request",
    "connection_error",
    "read_answer",
    "redirect_error",
    "timeout_error",
    "transport_error",
]

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


def read_answer(
    service: Service,
    task_id: str,
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    now: float,
    *,
    secret: bytes = b"",
) -> Task:
    """The Task in a 2xx answer, or raise the typed error the answer stands for.

    ``now`` is the Unix time, for a ``Retry-After`` given as an HTTP date. Wherever an
    error would quote the answer, ``secret`` (the API key) is replaced by ``[secure]``.
    """
    where = f"{service.name} task {task_id!r}"
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


def transport_error(exc: httpx.HTTPError, service: Service, task_id: str) -> APIError:
    """The typed error for an httpx failure (no usable answer came back)."""
    where = f"{service.name} task {task_id!r}"
    detail = str(exc) or type(exc).__name__  # httpx messages name the URL at most, never headers
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{where}: request timed out ({detail})", service=service.name, task_id=task_id)
    if isinstance(exc, httpx.TooManyRedirects):
        # A redirect loop will not fix itself: an APIError, which is not retried.
        return APIError(f"{where}: {detail}", service=service.name, task_id=task_id)
    return APIConnectionError(f"{where}: connection error ({detail})", service=service.name, task_id=task_id)


# The driver seam: what a driver is handed, what it gives back, and the errors it raises.


@attrs.frozen
class Request:
    """One GET of one task, as every driver sends it."""

    service: str
    task_id: str
    url: str  # absolute, query included
    timeout: httpx.Timeout  # per phase, already clipped to the budget
    budget: float | None  # seconds the whole request may take (None: only `timeout` bounds it)

    @property
    def origin(self) -> str:
        """``host:port`` as messages name it, such as ``127.0.0.1:1`` or ``api.mountsea.ai:443``."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


@attrs.frozen
class Answer:
    """An HTTP answer: its status, headers (case-insensitive lookups) and whole body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def connection_error(request: Request, detail: str, *, connecting: bool) -> APIConnectionError:
    """No answer from ``request.origin``; ``connecting``: no connection was ever made."""
    message = f"{request.service} task {request.task_id!r}: connection error with {request.origin} ({detail})"
    return APIConnectionError(message, service=request.service, task_id=request.task_id, connecting=connecting)


def timeout_error(request: Request, detail: str, *, connecting: bool = False) -> APITimeoutError:
    """``request`` ran out of time (while connecting, if ``connecting``)."""
    message = f"{request.service} task {request.task_id!r}: request to {request.origin} timed out ({detail})"
    return APITimeoutError(message, service=request.service, task_id=request.task_id, connecting=connecting)


def redirect_error(request: Request, detail: str) -> APIError:
    """Too many redirects: a loop that will not fix itself, so an APIError, which is not retried."""
    message = f"{request.service} task {request.task_id!r}: too many redirects from {request.origin} ({detail})"
    return APIError(message, service=request.service, task_id=request.task_id)
