"""Property-based fuzzing of both front ends: whatever a server answers, a Task or a typed error, in time.

Random answers (valid TaskResultDto documents with extra fields, unknown statuses and nulls;
wrong types, truncated JSON, invalid UTF-8, deep nesting, huge strings, random bytes), random
status codes 100-999 and random headers (``Retry-After`` garbage, negative and enormous values,
``retry-after-ms``, HTTP dates, content encodings, redirects) go through `Mountsea` and
`AsyncMountsea` over `httpx.MockTransport`. Each answer carries the outcome it must give, so
every example checks the exact result or error class and the exact number of requests, not just
"some exception".

Time is virtual: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep`` of the front ends run
on a `VirtualClock`, so a 60-second Retry-After costs nothing, and every example checks that no
sleep was negative or infinite and that the virtual time spent stays within the call's deadline.
A real-time ceiling per example catches any sleep that escaped the clock.

``MOUNTSEA_FUZZ=long`` (``make fuzz``) runs ten times the examples, with fresh randomness.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import gc
import gzip
import json
import math
import os
import ssl
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mountsea
import mountsea._async_client
import mountsea._base
import mountsea._client
from mountsea._errors import status_error
from mountsea._retry import MAX_RETRY_AFTER
from mountsea.testing import FakeMountsea, Fault
from tests.helpers import Front

# -- settings: a profile per MOUNTSEA_FUZZ value ------------------------------------------------

_PROFILE = os.environ.get("MOUNTSEA_FUZZ") or "default"
if _PROFILE not in ("default", "long"):
    _msg = f"MOUNTSEA_FUZZ must be 'default' or 'long', not {_PROFILE!r}"
    raise ValueError(_msg)
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,  # no .hypothesis/ directory in the tree
    "print_blob": True,
    # `front` is an immutable parameter, safe to share between examples; large bodies are on purpose.
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
}
settings.register_profile("mountsea-fuzz-default", derandomize=True, **_COMMON)
settings.register_profile("mountsea-fuzz-long", derandomize=False, **_COMMON)
_SCALE = 10 if _PROFILE == "long" else 1


def fuzz(examples: int) -> settings:
    """Settings for a test running ``examples`` examples (times ten under MOUNTSEA_FUZZ=long)."""
    return settings(settings.get_profile(f"mountsea-fuzz-{_PROFILE}"), max_examples=examples * _SCALE)


KEY = "sk-fuzz-0123456789"
BASE = "https://api.mountsea.test"  # never resolved: every request goes to a MockTransport
MAX_REDIRECTS = 5  # what the facade's own clients use; set on the clients passed in here too
REAL_SECONDS = 10.0  # no example may take this long in real time: every sleep is virtual
LATENCY = 0.05  # virtual seconds an answer takes to arrive
RUNAWAY = 2_000  # more requests than this in one call is a loop that ignores its deadline
SLACK = 1e-9  # float rounding on the virtual clock
KNOWN_STATUSES = ("pending", "ready", "assigned", "processing", "completed", "failed", "cancelled", "timeout")
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})
DOCUMENTED_KEYS = frozenset(
    {"taskId", "status", "result", "errorMessage", "errorCode", "createdAt", "finishedAt", "traceId"}
)
SERVICES = ("producer", "xai")


# -- the virtual clock ---------------------------------------------------------------------------


@dataclass
class VirtualClock:
    """``monotonic``/``time``/``sleep`` for the front ends; a sleep only moves the clock."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    wall: float = 1_800_000_000.0  # Unix time at virtual 0, for Retry-After HTTP dates

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now

    def sleep(self, seconds: float) -> None:
        # time.sleep would raise on these: the facade must never ask for them.
        assert isinstance(seconds, int | float), f"slept {seconds!r}"
        assert math.isfinite(seconds), f"slept {seconds!r}"
        assert seconds >= 0, f"slept {seconds!r}"
        self.sleeps.append(seconds)
        self.now += seconds


class _VirtualAsyncio:
    """The ``asyncio`` module as `_async_client` sees it: everything real but ``sleep``."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)
        await asyncio.sleep(0)


@contextlib.contextmanager
def virtual_time(clock: VirtualClock) -> Iterator[None]:
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, time=clock.time, sleep=clock.sleep)
    with (
        mock.patch.object(mountsea._client, "time", fake_time),
        mock.patch.object(mountsea._async_client, "time", fake_time),
        mock.patch.object(mountsea._async_client, "asyncio", _VirtualAsyncio(clock)),
        mock.patch.object(mountsea._base, "time", fake_time),
    ):
        yield


# -- answers and what each must become -----------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the facade must make of one answer.

    ``doc``: the TaskResultDto it must parse into (None: no Task). ``error``: the exact error
    class it must raise (None: no error). Both set: either is right (a nesting depth near the
    JSON decoder's recursion limit). ``retryable``: a transient failure. ``loop``: a redirect
    loop (``MAX_REDIRECTS + 1`` requests).
    """

    doc: dict[str, Any] | None = None
    error: type[mountsea.MountseaError] | None = None
    retryable: bool = False
    loop: bool = False

    def __repr__(self) -> str:
        doc = None if self.doc is None else {k: _short(v) for k, v in self.doc.items()}
        error = None if self.error is None else self.error.__name__
        return f"Expect(doc={doc!r}, error={error}, retryable={self.retryable}, loop={self.loop})"


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else f"<{type(value).__name__} of {len(text)} chars>"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    expect: Expect
    kind: str  # how the body was made, for failure reports

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 120 else self.body[:120] + b"...(%d bytes)" % len(self.body)
        return (
            f"Answer({self.status}, {self.kind}, headers={list(self.headers)!r}, body={body!r}, expect={self.expect!r})"
        )

    def response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=list(self.headers), stream=_Stream(self.body))


class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body streamed like one from the network.

    ``httpx.Response(content=...)`` hands the client a pre-read response whose ``elapsed`` is
    never set, on which the facade raises a raw RuntimeError when its logger is at DEBUG (an open
    finding, see tests/RELIABILITY.md); a stream goes through the same read path as a socket.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data

    async def __aiter__(self) -> Any:
        yield self._data


# Every strategy is built once, here: building them inside the composites below costs more
# than drawing from them.
ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates included
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
SHORT_TEXT = st.text(ANY_CHAR, max_size=12)
FINITE = st.floats(allow_nan=False, allow_infinity=False)  # NaN and infinities are not JSON: see "non-finite"
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | FINITE | SHORT_TEXT
JSON = st.recursive(
    SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(SHORT_TEXT, kids, max_size=3), max_leaves=5
)
NOT_OBJECT = SCALARS | st.lists(JSON, max_size=3)
NOT_STR = (
    st.integers()
    | FINITE
    | st.booleans()
    | st.lists(SCALARS, max_size=2)
    | st.dictionaries(SHORT_TEXT, SCALARS, max_size=2)
)
NOT_DATE = NOT_STR | SHORT_TEXT.map(lambda s: "x" + s)  # never ISO 8601
OFFSETS = st.timedeltas(
    min_value=datetime.timedelta(hours=-23, minutes=-59), max_value=datetime.timedelta(hours=23, minutes=59)
)
# Years 1 and 9999 are left out here: an offset can push them out of range (see "out-of-range").
DATES = st.datetimes(
    min_value=datetime.datetime(2, 1, 1),
    max_value=datetime.datetime(9998, 12, 31),
    timezones=st.none() | st.builds(datetime.timezone, OFFSETS),
).map(lambda moment: moment.isoformat())
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "result": st.dictionaries(SHORT_TEXT, JSON, max_size=3),
    "errorMessage": st.text(ANY_CHAR, max_size=40),
    "errorCode": st.integers(-(2**63), 2**63) | FINITE,
    "createdAt": DATES,
    "finishedAt": DATES,
    "traceId": SHORT_TEXT,
}
FIELD_STATES = st.sampled_from(["absent", "absent", "null", "value"])
# A value of the wrong type for each documented field (null is right for the optional ones).
WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "taskId": NOT_STR | st.none(),
    "status": NOT_STR | st.none(),
    "result": st.integers() | SHORT_TEXT | st.booleans() | st.lists(SCALARS, max_size=2),
    "errorMessage": NOT_STR,
    "errorCode": SHORT_TEXT
    | st.booleans()
    | st.lists(SCALARS, max_size=2)
    | st.dictionaries(SHORT_TEXT, SCALARS, max_size=2),
    "createdAt": NOT_DATE,
    "finishedAt": NOT_DATE,
    "traceId": NOT_STR,
}
WRONG_FIELDS = st.sampled_from(sorted(WRONG_TYPES))
TASK_IDS = st.text(ANY_CHAR, max_size=20)
STATUSES = st.sampled_from(KNOWN_STATUSES) | SHORT_TEXT
EXTRAS = st.dictionaries(SHORT_TEXT.filter(lambda key: key not in DOCUMENTED_KEYS), JSON, max_size=2)
HUGE = st.tuples(
    st.sampled_from(["errorMessage", "traceId", "huge"]), st.sampled_from("xé😀"), st.integers(10_000, 100_000)
)
NON_FINITE = st.tuples(
    st.sampled_from([b"errorCode", b"extra"]),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"[1, NaN]", b'{"a": Infinity}']),
)
OUT_OF_RANGE = st.tuples(
    st.sampled_from(["createdAt", "finishedAt"]),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:30:00+23:59",
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T12:00:00-23:00",
        ]
    ),
)
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xc3"])
ENCODINGS = st.sampled_from(["ascii", "utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-le", "utf-32-be"])
BODY_KIND_NAMES = (
    "valid",
    "wrong-type",
    "non-finite",
    "out-of-range",
    "not-object",
    "truncated",
    "bad-utf8",
    "bytes",
    "empty",
    "deep",
    "nested-array",
)
BODY_KINDS = st.sampled_from(["valid", "valid", *BODY_KIND_NAMES])  # valid answers three times as often
RANDOM_BYTES = st.binary(min_size=1, max_size=300)
ARRAY_DEPTHS = st.integers(1, 20_000)
# Nesting depth -> what a valid document with a field nested that deep gives. Past ~1,000 levels
# Python's JSON decoder may stop (RecursionError): where exactly depends on the stack depth it runs
# at, and Hypothesis raises the recursion limit while a test runs, so the middle band may go
# either way and is only used where the test accepts both.
DEPTH_BANDS = {
    "shallow": st.integers(1, 299),
    "either": st.integers(300, 29_999),
    "too-deep": st.integers(30_000, 60_000),
}
EXACT_BANDS = st.sampled_from(["shallow", "too-deep"])
ANY_BAND = st.sampled_from(["shallow", "either", "too-deep"])


@st.composite
def valid_docs(draw: st.DrawFn, task_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"taskId": task_id if task_id is not None else draw(TASK_IDS), "status": draw(STATUSES)}
    for key, values in OPTIONAL_FIELDS.items():
        state = draw(FIELD_STATES)
        if state != "absent":
            doc[key] = None if state == "null" else draw(values)
    doc.update(draw(EXTRAS))
    if draw(st.integers(0, 9)) == 0:  # a huge string somewhere
        key, char, size = draw(HUGE)
        doc[key] = char * size
    return doc


def _encode(doc: Any, encoding: str) -> bytes:
    if encoding == "ascii":
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False).encode(encoding, "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn, task_id: str | None, *, ambiguous: bool) -> tuple[bytes, Expect, str]:
    """A body, what a 2xx answer with it must become, and what kind of body it is."""
    kind = draw(BODY_KINDS)
    rve = Expect(error=mountsea.ResponseValidationError)
    if kind == "valid":
        doc = draw(valid_docs(task_id))
        return _encode(doc, draw(ENCODINGS)), Expect(doc=doc), kind
    if kind == "wrong-type":
        doc = draw(valid_docs(task_id))
        key = draw(WRONG_FIELDS)
        doc[key] = draw(WRONG_TYPES[key])
        return _encode(doc, "ascii"), rve, f"{kind}:{key}"
    if kind == "non-finite":  # Python's json reads these; they are not JSON, and the facade refuses them
        key, literal = draw(NON_FINITE)
        return _encode(draw(valid_docs(task_id)), "ascii")[:-1] + b', "%s": %s}' % (key, literal), rve, kind
    if kind == "out-of-range":  # valid ISO 8601, but not a time UTC can hold
        doc = draw(valid_docs(task_id))
        key, value = draw(OUT_OF_RANGE)
        doc[key] = value
        return _encode(doc, "ascii"), rve, kind
    if kind == "not-object":
        return _encode(draw(NOT_OBJECT), "ascii"), rve, kind
    if kind == "truncated":
        text = _encode(draw(valid_docs(task_id)), "utf-8")
        return text[: draw(st.integers(0, len(text) - 1))], rve, kind
    if kind == "bad-utf8":
        text = _encode(draw(valid_docs(task_id)), "utf-8")
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(INVALID_UTF8) + text[at:], rve, kind
    if kind == "bytes":
        return draw(RANDOM_BYTES), rve, kind
    if kind == "empty":
        return b"", rve, kind
    if kind == "nested-array":  # never an object, whether the decoder reaches the bottom or not
        depth = draw(ARRAY_DEPTHS)
        return b"[" * depth + b"]" * depth, rve, f"{kind}:{depth}"
    doc = {"taskId": task_id if task_id is not None else "t", "status": draw(st.sampled_from(KNOWN_STATUSES))}
    band = draw(ANY_BAND if ambiguous else EXACT_BANDS)
    depth = draw(DEPTH_BANDS[band])
    expect = {"shallow": Expect(doc=doc), "too-deep": rve}.get(
        band, Expect(doc=doc, error=mountsea.ResponseValidationError)
    )
    text = json.dumps(doc)[:-1] + ',"deep":' + '{"a":' * depth + "1" + "}" * depth + "}"
    return text.encode(), expect, f"{kind}:{depth}"


NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.integers(0, 5).map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["", " ", "0", "-0", "0.0", "1e309", "-1", "NaN", "nan", "inf", "-inf", "0x10", "1_000", "\xb2", "3 ", "\t2"]
    ),
    st.integers(10**20, 10**400).map(str),
)
HTTP_DATES = st.integers(-(2**31), 253_402_300_799).map(
    lambda ts: email.utils.formatdate(ts, usegmt=True)
) | st.sampled_from(
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Mon, 01 Jan 0001 00:00:00 +2359",
        "Wed, 21 Oct 2015 07:28:00 +9999",
        "Wed, 21 Oct 2015 07:28:00 -0000",
        "Sun, 06 Nov 1994 08:49:37",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ]
)
RETRY_VALUES = NUMBERS | HTTP_DATES | st.text(LATIN1, max_size=30)
OPTIONAL_HEADERS = st.lists(
    st.tuples(st.sampled_from(["Retry-After", "retry-after-ms", "X-Request-Id"]), RETRY_VALUES), max_size=3
)  # a name twice makes httpx join the values with ", "
CONTENT_TYPES = st.sampled_from(
    ["", "application/json", "text/html", "application/json; charset=latin-1", "x/y; charset=bogus"]
)
OTHER_HEADERS = st.lists(st.tuples(st.from_regex(r"\AX-[A-Za-z]{1,8}\Z"), st.text(LATIN1, max_size=20)), max_size=2)
CONTENT_ENCODINGS = st.sampled_from(["none", "none", "none", "gzip", "identity", "bogus-gzip"])
# Location -> does httpx accept it (True: the redirect is followed, here into a loop).
LOCATIONS = {
    "/producer/tasks?taskId=t": True,
    "http://other.test/elsewhere": True,
    "https://other.test:8443/x": True,
    "ftp://other.test/x": True,
    "//other.test/x": True,
    "": True,
    "?x=1": True,
    "http://\xfc.test/": True,
    "http://[::1": False,
    "\x7f": False,
    "http://a b/\x00": False,
}
MAYBE_LOCATION = st.none() | st.sampled_from(sorted(LOCATIONS))
REDIRECTS = frozenset({301, 302, 303, 307, 308})
STATUS_CODES = st.integers(100, 999) | st.sampled_from(
    [200, 200, 200, 201, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 520, 599]
)


def _retryable_status(code: int) -> bool:
    return code in (408, 429) or 500 <= code <= 599


@st.composite
def answers(draw: st.DrawFn, task_id: str | None = "t", *, redirects: bool = True, ambiguous: bool = True) -> Answer:
    """One HTTP answer and the outcome it must give (``redirects``: may redirect, into a loop)."""
    status = draw(STATUS_CODES)
    body, body_expect, kind = draw(bodies(task_id, ambiguous=ambiguous))
    headers = draw(OPTIONAL_HEADERS) + draw(OTHER_HEADERS)
    content_type = draw(CONTENT_TYPES)
    if content_type:
        headers.append(("Content-Type", content_type))
    encoding = draw(CONTENT_ENCODINGS)
    if encoding == "gzip":
        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", "gzip"))
    elif encoding == "identity":
        headers.append(("Content-Encoding", "identity"))
    elif encoding == "bogus-gzip" and len(body) >= 2 and not body.startswith(b"\x1f\x8b"):
        # Says gzip, is not: zlib rejects any two bytes but the gzip magic (one byte alone it waits on).
        headers.append(("Content-Encoding", "gzip"))
    else:
        encoding = "none"
    location = draw(MAYBE_LOCATION) if redirects and status in REDIRECTS else None
    if location is not None:
        headers.append(("Location", location))

    if encoding == "bogus-gzip":  # the body is read (and fails to decode) before anything else
        expect = Expect(error=mountsea.APIConnectionError, retryable=True)
    elif location is not None and LOCATIONS[location]:
        expect = Expect(error=mountsea.APIError, loop=True)
    elif location is not None:
        expect = Expect(error=mountsea.APIConnectionError, retryable=True)
    elif 200 <= status <= 299:
        expect = body_expect
    else:
        expect = Expect(error=status_error(status), retryable=_retryable_status(status))
    raw_headers = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    return Answer(status, raw_headers, body, expect, f"{kind}/{encoding}")


# -- running a call ------------------------------------------------------------------------------


@dataclass
class Server:
    """A MockTransport handler on the virtual clock: each task id walks its own script (the last answer repeats).

    An answer takes `LATENCY` virtual seconds to arrive. A request with less time than that
    (its own read timeout, or what is left of the batch's ``deadline``, as a batch's requests
    overlap) times out at its limit instead, without consuming an answer.
    """

    scripts: dict[tuple[str, str], list[Answer]]
    clock: VirtualClock
    deadline: float | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    served: dict[tuple[str, str], int] = field(default_factory=dict)
    timeouts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if len(self.requests) > RUNAWAY:
                msg = f"{len(self.requests)} requests in one call: a loop that ignores its deadline"
                raise RuntimeError(msg)
            limits = [request.extensions["timeout"].get("read")]
            if self.deadline is not None:
                limits.append(self.deadline - self.clock.now)
            limit = min((value for value in limits if value is not None), default=None)
            if limit is not None and limit < LATENCY:
                self.clock.now += max(limit, 0.0)
                self.timeouts += 1
                msg = "virtual read timeout"
                raise httpx.ReadTimeout(msg, request=request)
            self.clock.now += LATENCY
            service = request.url.path.strip("/").split("/")[0]
            key = (service, request.url.params.get("taskId", ""))
            script = self.scripts.get(key) or next(iter(self.scripts.values()))  # a redirect elsewhere
            n = self.served.get(key, 0)
            self.served[key] = n + 1
            return script[min(n, len(script) - 1)].response()


def run(front: Front, server: Server, clock: VirtualClock, call: Callable[[Any], Any], **kwargs: Any) -> Any:
    """``call(client)`` on a fresh client of ``front`` over ``server``: its result, or the MountseaError raised.

    Anything else raised propagates and fails the test: that is the property under test.
    """
    transport = httpx.MockTransport(server)
    http: httpx.Client | httpx.AsyncClient = (
        httpx.Client(transport=transport, max_redirects=MAX_REDIRECTS)
        if front.kind == "sync"
        else httpx.AsyncClient(transport=transport, max_redirects=MAX_REDIRECTS)
    )
    started = time.perf_counter()
    # Some answers nest JSON to just under the decoder's recursion limit. A garbage collection
    # that runs in there would call any pending finaliser (of any earlier test's object) with no
    # stack left, an "unraisable" RecursionError that pytest then cannot even format; collect
    # outside instead.
    gc.disable()
    try:
        with virtual_time(clock):
            return front.run(call, api_key=KEY, base_url=BASE, http_client=http, **kwargs)
    except mountsea.MountseaError as exc:
        return exc
    finally:
        gc.enable()
        assert time.perf_counter() - started < REAL_SECONDS, "an example slept in real time"


def _retryable(error: BaseException) -> bool:
    """The documented retry rule, written out independently of mountsea._retry."""
    if isinstance(error, mountsea.APIConnectionError):
        return True
    return isinstance(error, mountsea.APIStatusError) and _retryable_status(error.status_code)


def check_answer(expect: Expect, outcome: Any, service: str) -> None:
    """``outcome`` is exactly what ``expect`` says one read of the answer gives."""
    if isinstance(outcome, mountsea.Task):
        assert expect.doc is not None, f"a Task where {expect.error} was due: {outcome!r}"
        assert (outcome.service, outcome.id, outcome.raw_status) == (
            service,
            expect.doc["taskId"],
            expect.doc["status"],
        )
        assert outcome.done == (outcome.raw_status in TERMINAL)
        return
    assert isinstance(outcome, mountsea.MountseaError), f"not a Task nor a MountseaError: {outcome!r}"
    assert expect.error is not None, f"{outcome!r} where a Task was due"
    assert type(outcome) is expect.error, f"{type(outcome).__name__} where {expect.error.__name__} was due: {outcome}"
    if isinstance(outcome, mountsea.APIStatusError):
        assert outcome.retry_after is None or (math.isfinite(outcome.retry_after) and outcome.retry_after >= 0)
    assert f"{service} task 't'" in str(outcome)
    repr(outcome)


# -- the properties ------------------------------------------------------------------------------


@fuzz(500)
@given(answer=answers(), max_retries=st.integers(0, 2), service=st.sampled_from(SERVICES))
def test_get_gives_the_task_or_the_exact_typed_error(
    front: Front, answer: Answer, max_retries: int, service: str
) -> None:
    clock = VirtualClock()
    server = Server({(service, "t"): [answer]}, clock)
    outcome = run(front, server, clock, lambda c: getattr(c, service).tasks.get("t"), max_retries=max_retries)
    check_answer(answer.expect, outcome, service)
    if answer.expect.loop:
        attempts, per_attempt = 1, MAX_REDIRECTS + 1
    else:
        attempts, per_attempt = (max_retries + 1 if _retryable(outcome) else 1), 1
    assert len(server.requests) == attempts * per_attempt
    # One pause before each retry at most, each within the Retry-After cap.
    assert len([pause for pause in clock.sleeps if pause > 0]) <= attempts - 1
    assert all(pause <= MAX_RETRY_AFTER for pause in clock.sleeps)


def decisive(script: list[Answer]) -> int | None:
    """The index of the first answer that ends a wait (None: none does, and the last repeats forever).

    A terminal task or a non-transient error ends it; a task still running or a transient
    failure means one more request.
    """
    for index, answer in enumerate(script):
        expect = answer.expect
        assert expect.doc is None or expect.error is None, "wait scripts hold no ambiguous answers"
        if expect.doc is not None and expect.doc["status"] in TERMINAL:
            return index
        if expect.error is not None and not expect.retryable:
            return index
    return None


def last_seen(script: list[Answer], requests: int) -> dict[str, Any] | None:
    """The last document among the first ``requests`` answers served (the last answer repeats)."""
    served = [script[min(i, len(script) - 1)] for i in range(requests)]
    docs = [answer.expect.doc for answer in served if answer.expect.doc is not None]
    return docs[-1] if docs else None


def check_last_seen(item: mountsea.Task | mountsea.TaskRef | None, seen: dict[str, Any] | None) -> None:
    """A deadline hands back the last Task seen, or nothing (a TaskRef in a batch) if none was."""
    if seen is None:
        assert not isinstance(item, mountsea.Task), f"{item!r} though no task was ever read"
    else:
        assert isinstance(item, mountsea.Task), f"{item!r} though {seen['status']!r} was read"
        assert (item.id, item.raw_status) == (seen["taskId"], seen["status"])


POLLS = st.sampled_from(
    [None, 0.01, 0.5, 2.0, mountsea.PollPolicy(initial=0.1, maximum=3.0, multiplier=2.0, jitter=0.5)]
)
TIMEOUTS = st.sampled_from([0.0, 0.1, 0.5, 3.0, 10.0])  # at most ~200 answers of LATENCY each


@fuzz(300)
@given(
    script=st.lists(answers(redirects=False, ambiguous=False), min_size=1, max_size=4),
    timeout=TIMEOUTS,
    poll=POLLS,
    raise_on_failure=st.booleans(),
    service=st.sampled_from(SERVICES),
)
def test_wait_ends_right_and_never_past_its_deadline(
    front: Front, script: list[Answer], timeout: float, poll: Any, raise_on_failure: bool, service: str
) -> None:
    clock = VirtualClock()
    server = Server({(service, "t"): script}, clock)
    outcome = run(
        front,
        server,
        clock,
        lambda c: getattr(c, service).tasks.wait("t", timeout=timeout, poll=poll, raise_on_failure=raise_on_failure),
    )
    limit = timeout or LATENCY  # timeout=0 sends one request, bounded by the client's own timeout
    assert clock.now <= limit + SLACK, f"waited {clock.now} s of a {timeout} s deadline"
    end, requests = decisive(script), server.served.get((service, "t"), 0)
    if isinstance(outcome, mountsea.WaitTimeoutError):
        # The deadline came before the answer that ends the wait: never after it was read.
        assert end is None or requests <= end, f"read answer {end}, then timed out anyway"
        assert requests >= 1  # the first request always goes out
        assert timeout > 0 or requests == 1  # timeout=0: exactly one
        check_last_seen(outcome.task, last_seen(script, requests))
        return
    assert end is not None, f"{outcome!r} from a script that never ends"
    assert requests == end + 1, f"{requests} requests; answer {end} ends the wait"
    expect = script[end].expect
    if expect.doc is None:
        assert type(outcome) is expect.error, f"{outcome!r} where {expect.error} was due"
        return
    status = expect.doc["status"]
    if raise_on_failure and status != "completed":
        assert type(outcome) is mountsea.TaskFailedError, f"{outcome!r} for a task that ended {status}"
        task = outcome.task
    else:
        assert isinstance(outcome, mountsea.Task), f"{outcome!r} where the task was due"
        task = outcome
    assert (task.id, task.raw_status, task.done) == (expect.doc["taskId"], status, True)


@st.composite
def batches(draw: st.DrawFn) -> dict[tuple[str, str], list[Answer]]:
    size = draw(st.integers(1, 4))
    return {
        (draw(st.sampled_from(SERVICES)), f"t{i}"): draw(
            st.lists(answers(f"t{i}", redirects=False, ambiguous=False), min_size=1, max_size=3)
        )
        for i in range(size)
    }


def _ref(item: mountsea.Task | mountsea.TaskRef) -> tuple[str, str]:
    return (item.service, item.id)


def _collect(
    front: Front, refs: list[mountsea.TaskRef], yielded: list[mountsea.Task], **kwargs: Any
) -> Callable[[Any], Any]:
    if front.kind == "sync":

        def call(client: mountsea.Mountsea) -> None:
            for task in client.as_completed(refs, **kwargs):
                yielded.append(task)

        return call

    async def acall(client: mountsea.AsyncMountsea) -> None:
        async for task in client.as_completed(refs, **kwargs):
            yielded.append(task)

    return acall


@fuzz(150)
@given(scripts=batches(), timeout=TIMEOUTS, poll=POLLS, max_concurrency=st.integers(1, 4))
def test_as_completed_accounts_for_every_task_exactly_once(
    front: Front, scripts: dict[tuple[str, str], list[Answer]], timeout: float, poll: Any, max_concurrency: int
) -> None:
    refs = [mountsea.TaskRef(service, task_id) for service, task_id in scripts]  # type: ignore[arg-type]
    clock, yielded = VirtualClock(), []
    server = Server(scripts, clock, deadline=timeout)
    if front.is_sync:
        # Its requests run on threads: a second one in flight moves the shared virtual clock before the first
        # one's answer is handed back, which a real clock never does; the async front runs them all on one loop.
        max_concurrency = 1
    outcome = run(
        front,
        server,
        clock,
        _collect(front, refs, yielded, timeout=timeout, poll=poll, max_concurrency=max_concurrency),
    )
    assert clock.now <= timeout + SLACK, f"took {clock.now} s of a {timeout} s deadline"
    done = [_ref(task) for task in yielded]
    assert len(done) == len(set(done)), f"a task was yielded twice: {done}"
    if isinstance(outcome, mountsea.AuthenticationError | mountsea.PermissionDeniedError):
        # These stop the whole batch at once: one of the scripts must hold the answer that says so.
        assert any(a.expect.error is type(outcome) for script in scripts.values() for a in script)
        return
    if outcome is None:
        pending: list[Any] = []
        errors: dict[tuple[str, str], mountsea.APIError] = {}
    elif isinstance(outcome, mountsea.WaitTimeoutError):
        pending = list(outcome.pending)
        errors = {_ref(ref): error for ref, error in outcome.errors.items()}
    else:
        assert isinstance(outcome, mountsea.BatchError), f"unexpected {outcome!r}"
        pending, errors = [], {_ref(ref): error for ref, error in outcome.errors.items()}
    if outcome is not None:
        assert outcome.finished == []  # as_completed yielded every finished task already
    # Every task exactly once: yielded, failed with an error, or handed back pending.
    parts = [done, [_ref(item) for item in pending], list(errors)]
    assert sorted(key for part in parts for key in part) == sorted(scripts), f"lost or doubled: {parts}"
    for task in yielded:
        script, requests = scripts[_ref(task)], server.served.get(_ref(task), 0)
        end = decisive(script)
        assert end is not None, f"{task!r} yielded from a script that never ends"
        assert requests == end + 1
        doc = script[end].expect.doc
        assert doc is not None, f"{task!r} yielded where {script[end].expect.error} was due"
        assert (task.raw_status, task.done) == (doc["status"], True)
    for key, error in errors.items():
        script, requests = scripts[key], server.served.get(key, 0)
        end = decisive(script)
        assert end is not None, f"{key}: {error!r} from a script that never ends"
        assert requests == end + 1
        assert type(error) is script[end].expect.error, f"{key}: {error!r}"
    for item in pending:
        script, requests = scripts[_ref(item)], server.served.get(_ref(item), 0)
        end = decisive(script)
        assert end is None or requests <= end, f"{item!r} pending after its last answer"
        check_last_seen(item, last_seen(script, requests))


def test_fuzzed_answers_cover_every_kind_of_body() -> None:
    """The generators reach every kind of answer (or the properties above would prove less than claimed)."""
    seen: set[str] = set()

    @fuzz(1000)  # a deterministic draw: enough to reach every kind whatever literals seed it
    @given(answer=answers())
    def draw(answer: Answer) -> None:
        seen.add(answer.kind.split(":")[0].split("/")[0])
        seen.add(answer.kind.split("/")[1])

    draw()
    assert {*BODY_KIND_NAMES, "none", "gzip", "identity", "bogus-gzip"} <= seen


TLS = ssl.create_default_context()  # built once: every httpx client would otherwise load the CA bundle


def run_over_sockets(front: Front, call: Callable[[Any], Any], **kwargs: Any) -> Any:
    """``front.run`` with a caller-owned httpx client on the shared TLS context, closed in its own loop."""
    if front.kind == "sync":
        with httpx.Client(verify=TLS) as http:
            return front.run(call, api_key=KEY, http_client=http, **kwargs)

    async def main() -> Any:
        async with httpx.AsyncClient(verify=TLS) as http, mountsea.AsyncMountsea(KEY, http_client=http, **kwargs) as c:
            return await call(c)

    return asyncio.run(main())


def test_every_status_code_over_real_sockets(front: Front) -> None:
    """100-999 from a real HTTP/1.1 server: 1xx are interim answers to h11, so no answer at all."""
    with FakeMountsea(api_key=KEY) as fake:

        @fuzz(100)
        @given(code=st.integers(100, 999), retry_after=st.none() | RETRY_VALUES.filter(lambda v: v.strip() == v and v))
        def check(code: int, retry_after: str | None) -> None:
            fake.reset()
            fake.add_task("producer", "t", ["completed"])
            fake.inject(Fault.status(code, retry_after=retry_after))
            try:
                outcome = run_over_sockets(front, lambda c: c.producer.tasks.get("t"), base_url=fake.url, max_retries=0)
            except mountsea.MountseaError as exc:
                outcome = exc
            if code < 200:
                expected: type[mountsea.MountseaError] = mountsea.APIConnectionError
            elif code < 300:
                expected = mountsea.ResponseValidationError  # the body is an error document, not a task
            else:
                expected = status_error(code)
            assert type(outcome) is expected, f"{code}: {outcome!r}"
            assert fake.request_count() == 1

        check()
