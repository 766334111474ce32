"""`DefaultAioHttpClient.send` over real sockets on 127.0.0.1: answers, every transport failure, deadlines, redirects.

Each test builds `Request` objects and calls the driver directly, as `AsyncMountsea` will.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from typing import Any

import aiohttp
import httpx
import pytest
import trustme
import yarl
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

import mountsea
from mountsea._aiohttp import DefaultAioHttpClient, _translate
from mountsea._response import Answer, Request
from mountsea.testing import FakeMountsea, Fault

pytestmark = pytest.mark.anyio

KEY = "sk-aiohttp-driver-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
TIMEOUT = httpx.Timeout(10.0)
SLOW = 10.0  # seconds a misbehaving server would take; every bound below is far under it


def request(base: str, *, task_id: str = "t", timeout: httpx.Timeout = TIMEOUT, budget: float | None = None) -> Request:
    return Request("producer", task_id, f"{base}/producer/tasks?taskId={task_id}", timeout, budget)


@asynccontextmanager
async def bound(*, max_redirects: int = 5, **options: Any) -> AsyncIterator[DefaultAioHttpClient]:
    driver = DefaultAioHttpClient(**options)
    driver._bind(httpx.Headers(HEADERS), max_redirects)
    try:
        yield driver
    finally:
        await driver.aclose()


@pytest.fixture
def server() -> Iterator[FakeMountsea]:
    with FakeMountsea(api_key=KEY) as fake:
        fake.add_task("producer", "t", ["processing"])
        yield fake


async def failure(driver: DefaultAioHttpClient, req: Request) -> mountsea.APIError:
    error = await driver.send(req)
    assert isinstance(error, mountsea.APIError)
    assert KEY not in str(error)
    return error


async def test_an_answer_comes_back_whole_with_the_client_headers(server: FakeMountsea) -> None:
    async with bound() as driver:
        answer = await driver.send(request(server.url))
    assert isinstance(answer, Answer)
    assert answer.status_code == 200
    assert answer.headers["X-REQUEST-ID"] == answer.headers["x-request-id"] == "req-1"
    assert answer.content.startswith(b'{"taskId": "t", "status": "processing"')
    [sent] = server.requests
    assert (sent.method, sent.path, sent.query) == ("GET", "/producer/tasks", {"taskId": "t"})
    assert (sent.headers["authorization"], sent.headers["accept"]) == (f"Bearer {KEY}", "application/json")


async def test_error_statuses_are_answers_for_the_client_to_read(server: FakeMountsea) -> None:
    server.inject(Fault.status(503, retry_after="7"))
    async with bound() as driver:
        answer = await driver.send(request(server.url))
        missing = await driver.send(request(server.url, task_id="nope"))
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "7")
    assert missing.status_code == 404
    assert b"Task not found" in missing.content


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.reset_mid_body(), Fault.length_mismatch()], ids=lambda f: f.kind)
async def test_a_broken_answer_is_a_connection_error_sent_once(server: FakeMountsea, fault: Fault) -> None:
    async with bound() as driver:
        await driver.send(request(server.url))  # the fault then hits a kept-alive connection
        server.inject(fault)
        error = await failure(driver, request(server.url))
        again = await driver.send(request(server.url))  # a new connection replaces the broken one
    assert type(error) is mountsea.APIConnectionError
    assert error.connecting is False
    assert (error.service, error.task_id) == ("producer", "t")
    assert server.url.removeprefix("http://") in str(error)
    # aiohttp's own silent resend is off: the client's retries are the only ones.
    assert server.request_count() == 3
    assert again.status_code == 200


async def test_a_truncated_body_with_a_matching_length_is_an_answer(server: FakeMountsea) -> None:
    server.inject(Fault.truncated())
    async with bound() as driver:
        answer = await driver.send(request(server.url))
    assert answer.status_code == 200
    assert answer.content.endswith(b'"status": "pro')


async def test_the_budget_bounds_a_trickling_answer_as_a_whole(server: FakeMountsea) -> None:
    server.inject(Fault.trickle(0.1))  # each read is quick: only the budget can stop it
    async with bound() as driver:
        started = time.monotonic()
        error = await failure(driver, request(server.url, budget=0.5))
    took = time.monotonic() - started
    assert isinstance(error, mountsea.APITimeoutError)
    assert error.connecting is False
    assert 0.45 <= took < SLOW / 2


@pytest.mark.parametrize("fault", [Fault.delay(SLOW), Fault.slow_body(SLOW)], ids=lambda f: f.kind)
async def test_the_read_timeout_bounds_each_wait_for_bytes(server: FakeMountsea, fault: Fault) -> None:
    server.inject(fault)
    async with bound() as driver:
        started = time.monotonic()
        error = await failure(driver, request(server.url, timeout=httpx.Timeout(SLOW, read=0.3)))
    assert isinstance(error, mountsea.APITimeoutError)
    assert error.connecting is False
    assert time.monotonic() - started < SLOW / 2


async def test_a_closed_port_fails_while_connecting_and_names_it() -> None:
    with closing(socket.create_server(("127.0.0.1", 0))) as sock:
        port = sock.getsockname()[1]  # closed on leaving: nothing listens there any more
    async with bound() as driver:
        error = await failure(driver, request(f"http://127.0.0.1:{port}"))
    assert type(error) is mountsea.APIConnectionError
    assert error.connecting is True
    assert f"127.0.0.1:{port}" in str(error)


async def test_a_connect_timeout_is_a_timeout_while_connecting() -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    with closing(socket.create_server(("127.0.0.1", 0), backlog=0)) as listener:
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            async with bound() as driver:
                started = time.monotonic()
                error = await failure(
                    driver, request(f"http://127.0.0.1:{port}", timeout=httpx.Timeout(SLOW, connect=0.3))
                )
        finally:
            for filler in fillers:
                filler.close()
    assert isinstance(error, mountsea.APITimeoutError)
    assert error.connecting is True
    assert time.monotonic() - started < SLOW / 2


async def test_a_name_that_does_not_resolve_fails_while_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "api.mountsea.test":  # no resolver is asked: the test never leaves the machine
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    async with bound() as driver:
        error = await failure(driver, request("http://api.mountsea.test"))
    assert isinstance(error.__cause__, aiohttp.ClientConnectorDNSError)
    assert (type(error), error.connecting) == (mountsea.APIConnectionError, True)
    assert "api.mountsea.test:80" in str(error)


@contextmanager
def tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS listener that completes (or fails) one handshake per connection and hangs up."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


async def test_tls_failures_fail_while_connecting(server: FakeMountsea) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)  # a CA nobody trusts
    with tls_server(context) as port:
        async with bound() as driver:
            untrusted = await failure(driver, request(f"https://127.0.0.1:{port}"))
            not_tls = await failure(driver, request(server.url.replace("http://", "https://")))
    assert isinstance(untrusted.__cause__, aiohttp.ClientConnectorCertificateError)
    assert isinstance(not_tls.__cause__, aiohttp.ClientSSLError)
    for error in (untrusted, not_tls):
        assert (type(error), error.connecting) == (mountsea.APIConnectionError, True)


async def test_redirects_keep_the_key_on_their_origin_only(server: FakeMountsea) -> None:
    with FakeMountsea(api_key=KEY) as elsewhere:
        elsewhere.add_task("producer", "t", ["completed"])
        server.inject(Fault.redirect("/producer/tasks?taskId=t", code=307))
        server.inject(Fault.redirect(f"{elsewhere.url}/producer/tasks?taskId=t"))
        async with bound() as driver:
            answer = await driver.send(request(server.url))
        [first, same] = server.requests
        [other] = elsewhere.requests
    assert first.headers["authorization"] == same.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in other.headers
    assert other.headers["accept"] == "application/json"
    assert answer.status_code == 401  # the other origin turned the keyless request away


@pytest.mark.parametrize("max_redirects", [0, 1, 5])
async def test_redirects_are_followed_as_httpx_follows_them(server: FakeMountsea, max_redirects: int) -> None:
    async def through_driver() -> str:
        async with bound(max_redirects=max_redirects) as driver:
            outcome = await driver.send(request(server.url))
            if isinstance(outcome, Answer):
                return str(outcome.status_code)
            # An APIError, not a connection error: never retried.
            return (
                "too many"
                if type(outcome) is mountsea.APIError and "too many redirects" in str(outcome)
                else repr(outcome)
            )

    async def through_httpx() -> str:
        async with httpx.AsyncClient(headers=HEADERS, max_redirects=max_redirects, follow_redirects=True) as bare:
            try:
                return str((await bare.get(request(server.url).url)).status_code)
            except httpx.TooManyRedirects:
                return "too many"

    async def outcome(redirects: int) -> list[tuple[str, int]]:
        seen = []
        for send in (through_driver, through_httpx):
            server.reset()
            server.add_task("producer", "t", ["completed"])
            if redirects:
                server.inject(Fault.redirect("/producer/tasks?taskId=t"), times=redirects)
            seen.append((await send(), server.request_count()))
        return seen

    assert await outcome(max_redirects) == [("200", max_redirects + 1)] * 2
    assert await outcome(max_redirects + 1) == [("too many", max_redirects + 1)] * 2


async def test_a_redirect_to_another_scheme_is_a_connection_error(server: FakeMountsea) -> None:
    server.inject(Fault.redirect("ftp://127.0.0.1/producer/tasks?taskId=t"))
    async with bound() as driver:
        error = await failure(driver, request(server.url))
    assert (type(error), error.connecting) == (mountsea.APIConnectionError, False)


async def test_limit_caps_the_connections_in_flight(server: FakeMountsea) -> None:
    server.inject(Fault.delay(0.2), times=6)
    async with bound(limit=2) as driver:
        answers = await asyncio.gather(*(driver.send(request(server.url)) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert server.peak_in_flight == 2


async def test_aclose_closes_every_connection() -> None:
    """A one-answer server that then waits for the client to hang up."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
    hung_up = threading.Event()
    with closing(socket.create_server(("127.0.0.1", 0))) as listener:
        listener.settimeout(SLOW)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(SLOW)
                conn.recv(65536)
                conn.sendall(answer)
                if conn.recv(65536) == b"":
                    hung_up.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        driver = DefaultAioHttpClient()
        driver._bind(HEADERS, 5)
        reply = await driver.send(request(f"http://127.0.0.1:{listener.getsockname()[1]}"))
        assert reply.content == b"{}"
        assert not hung_up.wait(0.2)  # kept alive for the next request
        await driver.aclose()
        assert await asyncio.to_thread(hung_up.wait, SLOW)
        thread.join(SLOW)


async def test_the_key_is_never_logged(server: FakeMountsea, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    faults = [Fault.drop(), Fault.reset_mid_body(), Fault.length_mismatch(), Fault.redirect("ftp://x/y")]
    async with bound() as driver:
        for fault in faults:
            server.inject(fault)
            error = await failure(driver, request(server.url))
            assert KEY not in repr(error.__cause__)
        server.inject(Fault.redirect("/producer/tasks?taskId=t"), times=10)
        await failure(driver, request(server.url))
        server.inject(Fault.trickle(0.05))
        await failure(driver, request(server.url, budget=0.2))
    assert all(KEY not in record.getMessage() for record in caplog.records)


KEY_ = ConnectionKey("api.mountsea.test", 443, True, True, None, None, None, None)
ORIGIN = request("https://api.mountsea.test")
# What aiohttp attaches to a response error: the request's headers, the key among them.
INFO = aiohttp.RequestInfo(yarl.URL(ORIGIN.url), "GET", CIMultiDictProxy(CIMultiDict(HEADERS)), yarl.URL(ORIGIN.url))


@pytest.mark.parametrize(
    ("exc", "cls", "connecting"),
    [
        (
            aiohttp.ClientConnectorDNSError(KEY_, OSError(-2, "Name or service not known")),
            mountsea.APIConnectionError,
            True,
        ),
        (aiohttp.ClientConnectorError(KEY_, ConnectionRefusedError(111, "refused")), mountsea.APIConnectionError, True),
        (
            aiohttp.ClientConnectorCertificateError(KEY_, ssl.SSLCertVerificationError()),
            mountsea.APIConnectionError,
            True,
        ),
        (aiohttp.ClientConnectorSSLError(KEY_, ssl.SSLError()), mountsea.APIConnectionError, True),
        (aiohttp.ConnectionTimeoutError("Connection timeout"), mountsea.APITimeoutError, True),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), mountsea.APITimeoutError, False),
        (aiohttp.ServerTimeoutError("timeout"), mountsea.APITimeoutError, False),
        (TimeoutError(), mountsea.APITimeoutError, False),  # aiohttp's `total`
        (aiohttp.ServerDisconnectedError(), mountsea.APIConnectionError, False),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), mountsea.APIConnectionError, False),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), mountsea.APIConnectionError, False),
        (aiohttp.ClientPayloadError("Response payload is not completed"), mountsea.APIConnectionError, False),
        (
            aiohttp.ClientResponseError(INFO, (), status=400, message="Invalid header value"),
            mountsea.APIConnectionError,
            False,
        ),
        (aiohttp.InvalidUrlRedirectClientError("http://[::1", "bad"), mountsea.APIConnectionError, False),
        (aiohttp.NonHttpUrlRedirectClientError("ftp://x"), mountsea.APIConnectionError, False),
        (ConnectionResetError(104, "reset"), mountsea.APIConnectionError, False),
        (aiohttp.TooManyRedirects(INFO, (None,) * 6), mountsea.APIError, False),  # 6 responses: 5 redirects followed
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_every_aiohttp_failure_has_its_error(exc: Exception, cls: type[mountsea.APIError], connecting: bool) -> None:
    error = _translate(ORIGIN, exc)
    assert type(error) is cls
    assert getattr(error, "connecting", False) is connecting
    assert (error.service, error.task_id) == ("producer", "t")
    assert "api.mountsea.test:443" in str(error)
    assert KEY not in str(error)


async def test_without_the_extra_construction_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # `import aiohttp` now raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'mountsea\[aiohttp\]'"):
        DefaultAioHttpClient()


def test_importing_mountsea_does_not_import_aiohttp() -> None:
    code = "import sys, mountsea, mountsea._aiohttp; assert 'aiohttp' not in sys.modules, 'aiohttp imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_client_kept_past_asyncio_run_gets_a_session_in_the_next_loop(server: FakeMountsea) -> None:
    """A module-level client (pytest-asyncio gives each test its own loop): its session goes with the first loop."""
    server.add_task("producer", "t", ["completed"])
    driver = DefaultAioHttpClient()
    client = mountsea.AsyncMountsea(server.api_key, base_url=server.url, http_client=driver)

    async def read() -> mountsea.TaskStatus:
        return (await client.producer.tasks.get("t")).status

    assert asyncio.run(read()) is mountsea.TaskStatus.COMPLETED
    first = driver._session
    assert first is not None
    assert first.closed  # closed as its loop ended, not left to the GC ("Unclosed client session")
    assert asyncio.run(read()) is mountsea.TaskStatus.COMPLETED  # was a raw RuntimeError: Event loop is closed
    asyncio.run(client.aclose())
    assert driver._session is None
