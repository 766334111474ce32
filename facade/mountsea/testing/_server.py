"""A loopback fake of the Mountsea task API: a real HTTP/1.1 server on 127.0.0.1, standard library only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from ._http import _Server

_SERVICES = ("producer", "xai")
_TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})
_UNSUCCESSFUL = frozenset({"failed", "cancelled", "timeout"})
_JSON = "application/json"
_Headers = tuple[tuple[str, str], ...]
_Answer = tuple[int, _Headers, bytes]
_CHALLENGE: _Headers = (("WWW-Authenticate", "Bearer"),)  # what a 401 says, as RFC 9110 asks


@dataclass(frozen=True)
class Fault:
    """A misbehaviour served instead of the normal answer; build one with the classmethods."""

    kind: str
    code: int = 200
    seconds: float = 0.0
    body: bytes = b""
    headers: _Headers = ()

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: Mapping[str, Any] | bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: str | float | None = None,
    ) -> Fault:
        """Answer with status `code` (100-999) and a JSON error body unless `body` is given.

        A 401 carries ``WWW-Authenticate: Bearer`` unless `headers` say otherwise.
        """
        if not 100 <= code <= 999:
            msg = f"status code must be within 100-999, got {code}"
            raise ValueError(msg)
        if body is None:
            body = {"statusCode": code, "message": _phrase(code)}
        content, content_type = _encode(body)
        extra = [("Content-Type", content_type), *(_CHALLENGE if code == 401 else ())]
        if retry_after is not None:
            extra.append(("Retry-After", retry_after if isinstance(retry_after, str) else f"{retry_after:g}"))
        return cls("status", code=code, body=content, headers=_merge(extra, headers))

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep `seconds` before sending the normal answer (the task's script advances)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def slow_body(cls, seconds: float) -> Fault:
        """Send the normal answer's headers and half its body, sleep `seconds`, then the rest."""
        return cls("slow_body", seconds=seconds)

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        """Send the normal answer, status line and headers included, a byte every `seconds`.

        Each read is quick, so no per-read timeout fires; only a deadline on the whole request can.
        """
        return cls("trickle", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Promise a full body, send part of it, then reset the connection."""
        return cls("reset_mid_body")

    @classmethod
    def html(cls, code: int = 200) -> Fault:
        """Answer with an HTML page (as a misconfigured proxy would) instead of JSON."""
        page = f"<!DOCTYPE html><html><body><h1>{code} {_phrase(code)}</h1></body></html>"
        return cls("html", code=code, body=page.encode(), headers=(("Content-Type", "text/html; charset=utf-8"),))

    @classmethod
    def truncated(cls) -> Fault:
        """Answer 200 with a JSON body cut in half (the Content-Length matches the cut body)."""
        return cls("truncated")

    @classmethod
    def length_mismatch(cls) -> Fault:
        """Answer 200 with a Content-Length larger than the body sent, then close the connection."""
        return cls("length_mismatch")

    @classmethod
    def redirect(cls, location: str, *, code: int = 302) -> Fault:
        """Redirect to `location` (absolute or relative)."""
        return cls("redirect", code=code, headers=(("Location", location),))


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request as the fake server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    service: str | None
    task_id: str | None
    time: float
    fault: str | None = None

    def __repr__(self) -> str:
        """Show every field, with the Authorization header masked."""
        masked = {k: "[secure]" if k == "authorization" else v for k, v in self.headers.items()}
        shown = ", ".join(
            f"{f.name}={masked if f.name == 'headers' else getattr(self, f.name)!r}" for f in fields(self)
        )
        return f"RecordedRequest({shown})"


@dataclass
class _Task:
    statuses: tuple[str, ...]
    result: dict[str, Any]
    error_message: str | None
    error_code: int | None
    extra: dict[str, Any]
    step_seconds: float | None
    started: float = field(default_factory=time.monotonic)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: str | None = None
    hits: int = 0


@dataclass
class _Queued:
    fault: Fault
    times: int
    service: str | None
    task_id: str | None


class FakeMountsea:
    """A fake Mountsea task API on a loopback port, run in a background thread; also a context manager."""

    def __init__(self, api_key: str = "test-key") -> None:
        """Prepare a stopped server that accepts `Authorization: Bearer <api_key>`."""
        self._api_key = api_key
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], _Task | _Answer] = {}
        self._faults: list[_Queued] = []
        self._requests: list[RecordedRequest] = []
        self._counter = 0
        self._in_flight = 0
        self._peak = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        """Describe the server without its API key."""
        httpd = self._httpd
        where = f"http://127.0.0.1:{httpd.server_address[1]}" if httpd else "stopped"
        return f"FakeMountsea({where}, api_key='[secure]', tasks={len(self._tasks)})"

    def __enter__(self) -> Self:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def start(self) -> None:
        """Listen on an ephemeral port and serve in a daemon thread (no-op if already running)."""
        with self._lock:
            if self._httpd is not None:
                return
            self._httpd = _Server(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.02,), name="FakeMountsea", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection (no-op if stopped)."""
        with self._lock:
            httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(timeout=1.0)
        thread.join()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._httpd is None:
            msg = "FakeMountsea is not running; call start() first"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def api_key(self) -> str:
        """The only API key the server accepts."""
        return self._api_key

    def add_task(
        self,
        service: str,
        task_id: str,
        statuses: Sequence[str] = ("pending", "processing", "completed"),
        *,
        result: Mapping[str, Any] | None = None,
        error_message: str | None = None,
        error_code: int | None = None,
        extra: Mapping[str, Any] | None = None,
        step_seconds: float | None = None,
    ) -> None:
        """Script a task walking through `statuses`: one step per GET, or one per `step_seconds`."""
        _check_service(service)
        if isinstance(statuses, str) or not statuses:
            msg = "statuses must be a non-empty sequence of strings"
            raise ValueError(msg)
        if step_seconds is not None and step_seconds <= 0:
            msg = "step_seconds must be positive"
            raise ValueError(msg)
        result = {"url": f"https://cdn.example/{task_id}.mp3"} if result is None else result
        task = _Task(tuple(statuses), dict(result), error_message, error_code, dict(extra or {}), step_seconds)
        with self._lock:
            self._tasks[service, task_id] = task

    def set_payload(
        self,
        service: str,
        task_id: str,
        payload: Mapping[str, Any] | bytes | str,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str = _JSON,
    ) -> None:
        """Answer every authorised GET of this task with a fixed raw payload (replaces any script)."""
        _check_service(service)
        answer = (status_code, _merge([("Content-Type", content_type)], headers), _encode(payload)[0])
        with self._lock:
            self._tasks[service, task_id] = answer

    def inject(self, fault: Fault, *, times: int = 1, service: str | None = None, task_id: str | None = None) -> None:
        """Queue `fault` for the next `times` matching requests (FIFO; None matches anything)."""
        if service is not None:
            _check_service(service)
        if times < 1:
            msg = "times must be at least 1"
            raise ValueError(msg)
        with self._lock:
            self._faults.append(_Queued(fault, times, service, task_id))

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def request_count(self, service: str | None = None, task_id: str | None = None) -> int:
        """How many requests were received, optionally only for one service and/or task."""
        return sum(
            1
            for r in self.requests
            if (service is None or r.service == service) and (task_id is None or r.task_id == task_id)
        )

    @property
    def peak_in_flight(self) -> int:
        """The largest number of requests handled at the same time."""
        with self._lock:
            return self._peak

    def reset(self) -> None:
        """Forget tasks, queued faults and recorded requests, and reset the peak."""
        with self._lock:
            self._tasks.clear()
            self._faults.clear()
            self._requests.clear()
            self._peak = self._in_flight

    # Internals used by the request handler.

    @contextmanager
    def _in_request(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _receive(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[RecordedRequest, int, Fault | None]:
        """Record a request and take the first queued fault matching it; also return the request's number."""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        service = next((s for s in _SERVICES if url.path == f"/{s}/tasks"), None)
        task_id = query.get("taskId") or None
        with self._lock:
            fault = None
            for queued in self._faults:
                if queued.service in (None, service) and queued.task_id in (None, task_id):
                    fault = queued.fault
                    queued.times -= 1
                    if not queued.times:
                        self._faults.remove(queued)
                    break
            self._counter += 1
            kind = None if fault is None else fault.kind
            request = RecordedRequest(method, url.path, query, dict(headers), service, task_id, time.monotonic(), kind)
            self._requests.append(request)
            return request, self._counter, fault

    def _answer(self, request: RecordedRequest, n: int) -> _Answer:
        """The normal answer to a request, advancing the task's script."""
        if request.method != "GET":
            return _error(405, "Method not allowed", (("Allow", "GET"),))
        if request.service is None:
            return _error(404, f"Cannot GET {request.path}")
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self._api_key:
            return _error(401, "Invalid API key", _CHALLENGE)
        if not request.task_id:
            return _error(400, "taskId is required")
        with self._lock:
            task = self._tasks.get((request.service, request.task_id))
            if isinstance(task, tuple):
                return task
            if task is None:
                return _error(404, "Task not found")
            payload = _payload(task, request.task_id, n)
        return 200, (("Content-Type", _JSON),), json.dumps(payload).encode()


def _payload(task: _Task, task_id: str, n: int) -> dict[str, Any]:
    if task.step_seconds is None:
        step, task.hits = task.hits, task.hits + 1
    else:
        step = int((time.monotonic() - task.started) / task.step_seconds)
    status = task.statuses[min(step, len(task.statuses) - 1)]
    payload: dict[str, Any] = {"taskId": task_id, "status": status, "createdAt": _iso(task.created)}
    if status == "completed":
        payload["result"] = task.result
    if status in _UNSUCCESSFUL and task.error_message is not None:
        payload["errorMessage"] = task.error_message
    if status in _UNSUCCESSFUL and task.error_code is not None:
        payload["errorCode"] = task.error_code
    if status in _TERMINAL:
        if task.finished_at is None:  # when the script says it finished, else when a GET first saw it so
            took = None if task.step_seconds is None else task.statuses.index(status) * task.step_seconds
            task.finished_at = _iso(datetime.now(UTC) if took is None else task.created + timedelta(seconds=took))
        payload["finishedAt"] = task.finished_at
    payload["traceId"] = f"trace-{n}"
    return {**payload, **task.extra}


def _check_service(service: str) -> None:
    if service not in _SERVICES:
        msg = f"service must be 'producer' or 'xai', got {service!r}"
        raise ValueError(msg)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _encode(body: Mapping[str, Any] | bytes | str) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(dict(body)).encode(), _JSON


def _merge(base: list[tuple[str, str]], extra: Mapping[str, str] | None) -> _Headers:
    """`base` headers overridden (case-insensitively) by `extra`."""
    names = {name.lower() for name in extra or {}}
    return tuple([(k, v) for k, v in base if k.lower() not in names] + list((extra or {}).items()))


def _error(code: int, message: str, headers: _Headers = ()) -> _Answer:
    return code, (("Content-Type", _JSON), *headers), json.dumps({"statusCode": code, "message": message}).encode()
