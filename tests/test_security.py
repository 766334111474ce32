"""The security pass: the key never shows, never follows a redirect off its origin; ids stay in the query;
a base URL with no scheme or with credentials is refused before any request.

* The key: every fault of the fault matrix (each through one entry point, in turn, so that all three
  and both front ends take part), with every logger at DEBUG:
  neither the key nor ``Bearer <key>`` appears in a log record, in the ``repr``/``str``/traceback of
  the exception raised (its chain, its ``body``, its batch's errors and tasks), in the Task, or in the
  client's ``repr``; nor in the command line's output with ``MOUNTSEA_LOG=debug``. A server that
  echoes the key back has it redacted.
* Redirects: ``Authorization`` goes only where it came from. Over real sockets, a redirect from one
  FakeMountsea to another port, to another host name (``localhost`` for ``127.0.0.1``), or to
  another scheme (``https://`` on a port where a raw listener records the bytes) arrives without it.
  "Downgrade" is a redirect from ``https://`` to ``http://``: loopback servers here speak plain HTTP
  only, so no real socket can start from ``https``. The scheme change on sockets shows the key is
  not sent to a new scheme (the listener sees only a TLS ClientHello); the downgrade itself runs
  over ``httpx.MockTransport`` (in process, no network), where https and http origins are easy.
* Task ids travel as the ``taskId`` query parameter only: ``../../admin``, ``a/b``, ``%2e%2e``,
  ``?x=1#f``... reach the server with the path exactly ``/<service>/tasks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import mountsea
from mountsea.testing import FakeMountsea, Fault
from tests.helpers import Front
from tests.test_fault_matrix import (
    CLI_ROWS,
    ENTRY_POINTS,
    ROWS,
    Row,
    call_entry,
    closed_port_url,
    err,
    fast_backoff,  # noqa: F401 - the fixture, for the rows' retries
)

SECRET = "sk-live-S3cr3t/Key+9xQ=="  # with "/" and "+", which URL and JSON escaping would change
SECRETS = (SECRET, f"Bearer {SECRET}")


@pytest.fixture
def listener() -> Iterator[RawListener]:
    raw = RawListener()
    yield raw
    raw.close()


@pytest.fixture
def server() -> Iterator[FakeMountsea]:
    with FakeMountsea(api_key=SECRET) as fake:
        fake.add_task("producer", "t", ["completed"])
        yield fake


def _texts(obj: Any, depth: int = 0) -> Iterator[str]:
    """Every text a caller could see of ``obj``: repr, str, traceback, and the same of what it holds."""
    if depth > 4 or obj is None:
        return
    yield repr(obj)
    yield str(obj)
    if isinstance(obj, BaseException):
        yield "".join(traceback.format_exception(obj))  # the whole chain, httpx's exceptions included
        for value in vars(obj).values():
            yield from _texts(value, depth + 1)
    elif isinstance(obj, mountsea.Task):
        yield json.dumps(obj.to_dict(), default=str)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _texts(key, depth + 1)
            yield from _texts(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _texts(item, depth + 1)


def assert_secret_absent(*objects: Any, caplog: pytest.LogCaptureFixture | None = None) -> None:
    texts = [text for obj in objects for text in _texts(obj)]
    if caplog is not None:
        texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"the key shows in: {text[:300]}"


def _clients(front: Front, server: FakeMountsea) -> list[Any]:
    client = front.client(api_key=SECRET, base_url=server.url)
    shown = [client, client.producer, client.producer.tasks, client.xai.tasks, repr(vars(client))]
    if front.kind == "sync":
        client.close()
    else:
        asyncio.run(client.aclose())
    return shown


# -- the key, across every error path ------------------------------------------------------------


# Every fault once, each through a different entry point in turn (the fault matrix already
# crosses every fault with every entry point; here what matters is what gets printed).
@pytest.mark.parametrize(
    ("row", "entry"),
    [(row, ENTRY_POINTS[i % len(ENTRY_POINTS)]) for i, row in enumerate(ROWS)],
    ids=[f"{row.name}-{ENTRY_POINTS[i % len(ENTRY_POINTS)]}" for i, row in enumerate(ROWS)],
)
def test_the_key_never_shows_on_any_fault(
    row: Row, entry: str, server: FakeMountsea, caplog: pytest.LogCaptureFixture
) -> None:
    front = Front("sync" if ROWS.index(row) % 2 == 0 else "async")
    caplog.set_level(logging.DEBUG)  # every logger: mountsea, httpx, httpcore
    row.inject(server)
    outcome = call_entry(front, entry, row, closed_port_url() if row.refused else server.url, SECRET)
    assert isinstance(outcome, mountsea.Task | mountsea.MountseaError), repr(outcome)
    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    assert_secret_absent(outcome, *_clients(front, server), caplog=caplog)


ECHOES = {
    "error-body": Fault.status(500, body={"message": f"no such key: {SECRET}", "traceId": SECRET}),
    "401-body": Fault.status(401, body={"message": f"Authorization: Bearer {SECRET} is revoked"}),
    "text-body": Fault.status(502, body=f"upstream said: Authorization: Bearer {SECRET}"),
    "html-body": Fault.status(503, body=f"<html>{SECRET}</html>".encode(), headers={"Content-Type": "text/html"}),
    # JSON may escape any character: "/" as "\/", any letter as "\u00XX".
    "escaped-slash": Fault.status(500, body=json.dumps({"message": f"bad {SECRET}"}).replace("/", "\\/")),
    "escaped-letter": Fault.status(401, body='{"message": "bad \\u0073' + SECRET[1:] + '"}'),
}


@pytest.mark.parametrize("fault", ECHOES.values(), ids=list(ECHOES))
def test_a_server_echoing_the_key_gets_it_redacted(
    front: Front, server: FakeMountsea, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.inject(fault)
    with pytest.raises(mountsea.APIStatusError) as caught:
        front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=server.url, max_retries=0)
    assert "[secure]" in str(caught.value)  # the echo is there, masked
    assert_secret_absent(caught.value, caplog=caplog)


def test_a_request_id_echoing_the_key_gets_it_redacted(
    front: Front, server: FakeMountsea, caplog: pytest.LogCaptureFixture
) -> None:
    # Our logger only: httpcore's own DEBUG trace prints every response header as the server sent it.
    caplog.set_level(logging.DEBUG, logger="mountsea")
    server.inject(Fault.status(500, headers={"X-Request-Id": f"req-{SECRET}"}))
    with pytest.raises(mountsea.ServerError) as caught:
        front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=server.url, max_retries=0)
    assert caught.value.request_id is not None
    assert "req-[secure]" in caught.value.request_id
    assert_secret_absent(caught.value, caplog=caplog)


@pytest.mark.parametrize("status", [200, 401])
def test_a_broken_body_echoing_the_key_escaped_is_withheld(front: Front, server: FakeMountsea, status: int) -> None:
    # Not JSON, so the escapes cannot be decoded as JSON; the excerpt is withheld instead.
    server.inject(Fault.status(status, body='{"message": "bad \\u0073' + SECRET[1:] + '" oops'))
    with pytest.raises(mountsea.APIError) as caught:
        front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=server.url, max_retries=0)
    assert "[withheld: the answer quotes the API key]" in str(caught.value)
    assert_secret_absent(caught.value)


def test_a_task_echoing_the_key_escaped_gets_it_redacted(front: Front, server: FakeMountsea) -> None:
    escaped = SECRET.replace("/", "\\/").replace("s", "\\u0073")
    body = '{"taskId": "t", "status": "failed", "errorMessage": "key ' + escaped + '", "note": "' + escaped + '"}'
    server.inject(Fault.status(200, body=body))
    task = front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=server.url)
    assert task.error_message == "key [secure]"
    assert task.extra == {"note": "[secure]"}
    assert_secret_absent(task)


def test_a_task_echoing_the_key_gets_it_redacted(front: Front, server: FakeMountsea) -> None:
    server.add_task("producer", "t", ["failed"], error_message=f"key {SECRET} has no credit", extra={"note": SECRET})
    with pytest.raises(mountsea.TaskFailedError) as caught:
        front.run(lambda c: c.producer.tasks.wait("t", poll=0.02), api_key=SECRET, base_url=server.url)
    assert_secret_absent(caught.value, caught.value.task)


# A 500 echoing the key, served every time. Only what the CLI prints is checked with it, not the
# outcomes (get gives up after 3 requests; wait, with real backoff, runs into its 0.5 s deadline).
ECHO_ROW = Row(
    "echo-in-error-body",
    ((ECHOES["error-body"], 50),),
    err(mountsea.ServerError, 3),
    err(mountsea.WaitTimeoutError, 2),
    err(mountsea.WaitTimeoutError, 2),
)


@pytest.mark.parametrize("row", [*CLI_ROWS, ECHO_ROW], ids=lambda row: row.name)
def test_the_cli_never_prints_the_key(server: FakeMountsea, row: Row) -> None:
    row.inject(server)
    url = closed_port_url() if row.refused else server.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    env.update(MOUNTSEA_API_KEY=SECRET, MOUNTSEA_BASE_URL=url, MOUNTSEA_LOG="debug")
    for args in (["get", "producer", "t"], ["wait", "producer", "t", "--poll", "0.02", "--timeout", "0.5", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "mountsea", *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert "DEBUG" in done.stderr  # the debug log was on
        for secret in SECRETS:
            assert secret not in done.stdout + done.stderr


def test_a_bad_key_is_refused_without_being_quoted(front: Front) -> None:
    for key in (f"{SECRET}\n", f" {SECRET}", f"{SECRET}\x00", f"{SECRET}é"):
        with pytest.raises(mountsea.ConfigurationError) as caught:
            front.client(api_key=key, base_url="http://127.0.0.1:1")
        assert_secret_absent(caught.value)


# -- redirects -----------------------------------------------------------------------------------


class RawListener:
    """A TCP listener on 127.0.0.1 that records every byte it receives, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.02)  # so that the thread sees `stop` soon
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


REDIRECT_CODES = (301, 302, 303, 307, 308)


@pytest.mark.parametrize("code", REDIRECT_CODES)
@pytest.mark.parametrize("target", ["same-origin", "other-port", "other-host", "other-scheme"])
def test_authorization_stays_on_its_origin(
    front: Front, server: FakeMountsea, listener: RawListener, target: str, code: int
) -> None:
    with FakeMountsea(api_key=SECRET) as elsewhere:
        elsewhere.add_task("producer", "t", ["completed"])
        port = server.url.rsplit(":", 1)[1]
        location = {
            "same-origin": "/producer/tasks?taskId=t",
            "other-port": f"{elsewhere.url}/producer/tasks?taskId=t",
            "other-host": f"http://localhost:{port}/producer/tasks?taskId=t",
            "other-scheme": f"https://127.0.0.1:{listener.port}/producer/tasks?taskId=t",
        }[target]
        server.inject(Fault.redirect(location, code=code))
        try:
            outcome = front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=server.url, max_retries=0)
        except mountsea.MountseaError as exc:
            outcome = exc
        followed = [*server.requests[1:], *elsewhere.requests]
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    if target == "same-origin":
        assert isinstance(outcome, mountsea.Task)
        assert [r.headers.get("authorization") for r in followed] == [f"Bearer {SECRET}"]
    elif target == "other-scheme":
        # The redirect was followed: a TLS handshake began, and nothing readable was sent.
        assert listener.received[:1] == b"\x16", bytes(listener.received[:16])
        assert SECRET.encode() not in listener.received
        assert isinstance(outcome, mountsea.APIConnectionError)
        assert followed == []
    else:
        # Followed without the key, so the other side turns it away.
        [request] = followed
        assert "authorization" not in request.headers
        assert isinstance(outcome, mountsea.AuthenticationError)


@pytest.mark.parametrize(
    ("start", "location", "keeps_key"),
    [
        ("https://api.mountsea.test", "http://api.mountsea.test/producer/tasks?taskId=t", False),  # downgrade
        ("https://api.mountsea.test", "http://api.mountsea.test:443/producer/tasks?taskId=t", False),
        ("https://api.mountsea.test", "https://api.mountsea.test:8443/producer/tasks?taskId=t", False),
        ("https://api.mountsea.test", "https://evil.test/producer/tasks?taskId=t", False),
        ("https://api.mountsea.test", "https://sub.api.mountsea.test/producer/tasks?taskId=t", False),
        ("https://api.mountsea.test", "https://api.mountsea.test/other?taskId=t", True),  # same origin
        ("http://api.mountsea.test", "https://api.mountsea.test/producer/tasks?taskId=t", True),  # upgrade, 80 -> 443
    ],
    ids=["downgrade", "downgrade-port-443", "other-port", "other-host", "subdomain", "same-origin", "upgrade"],
)
def test_a_downgrade_never_carries_the_key(front: Front, start: str, location: str, keeps_key: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, json={"taskId": "t", "status": "completed"})

    transport = httpx.MockTransport(handler)  # in process: no name is resolved, nothing leaves
    if front.kind == "sync":
        http: Any = httpx.Client(transport=transport)
    else:
        http = httpx.AsyncClient(transport=transport)
    task = front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=start, http_client=http)
    assert task.succeeded
    first, second = seen
    assert first.headers["authorization"] == f"Bearer {SECRET}"
    assert str(second.url) == location
    assert ("authorization" in second.headers) is keeps_key


# -- task ids stay in the query ------------------------------------------------------------------

NASTY_IDS = [
    "../../admin",
    "..",
    ".",
    "/",
    "a/b",
    "%2e%2e",
    "%2e%2e%2fadmin",
    "..%2F..%2Fadmin",
    "?x=1#f",
    "#frag",
    "a&taskId=b",
    "taskId=x",
    "a+b c",
    "a;b=c",
    "\\..\\admin",
    "ü/😀",
    "%00",
    "%",
    "t",
]


def test_task_ids_are_query_parameters_only(front: Front, server: FakeMountsea) -> None:
    for service in ("producer", "xai"):
        for task_id in NASTY_IDS:
            server.add_task(service, task_id, ["completed"])
    refs = [mountsea.TaskRef(s, i) for s in ("producer", "xai") for i in NASTY_IDS]  # type: ignore[arg-type]

    def both(c: Any) -> Any:
        return [*(getattr(c, r.service).tasks.get(r.id) for r in refs), *c.wait_all(refs, poll=0.02)]

    async def both_async(c: Any) -> Any:
        return [*[await getattr(c, r.service).tasks.get(r.id) for r in refs], *await c.wait_all(refs, poll=0.02)]

    tasks = front.run(both if front.kind == "sync" else both_async, api_key=SECRET, base_url=server.url)
    assert [(t.service, t.id) for t in tasks] == [(r.service, r.id) for r in refs] * 2
    assert len(server.requests) == 2 * len(refs)
    for request in server.requests:
        assert request.path == f"/{request.service}/tasks"
        assert list(request.query) == ["taskId"]
    assert sorted((r.service, r.task_id) for r in server.requests) == sorted((r.service, r.id) for r in refs * 2)


@pytest.mark.parametrize("task_id", ["../../admin", "a/b", "%2e%2e", "?x=1#f"])
def test_the_cli_keeps_task_ids_in_the_query(server: FakeMountsea, task_id: str) -> None:
    server.add_task("producer", task_id, ["completed"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    env.update(MOUNTSEA_API_KEY=SECRET, MOUNTSEA_BASE_URL=server.url)
    done = subprocess.run(
        [sys.executable, "-m", "mountsea", "get", "producer", task_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["taskId"] == task_id
    [request] = server.requests
    assert (request.path, request.query) == ("/producer/tasks", {"taskId": task_id})


# -- base URLs -----------------------------------------------------------------------------------

BAD_BASE_URLS = {
    "no-scheme": "api.mountsea.ai",
    "host-port-no-scheme": "127.0.0.1:{port}",
    "localhost-port-no-scheme": "localhost:{port}",
    "scheme-relative": "//127.0.0.1:{port}",
    "path-only": "/producer",
    "user-and-password": "http://user:hunter2@127.0.0.1:{port}",
    "user-only": "http://hunter2@127.0.0.1:{port}",
    "password-only": "https://:hunter2@api.mountsea.ai",
    "key-as-user": "http://" + SECRET.replace("/", "%2F") + "@127.0.0.1:{port}",
    "ftp": "ftp://127.0.0.1:{port}",
    "file": "file:///etc/passwd",
    "query": "http://127.0.0.1:{port}?token=hunter2",
    "fragment": "http://127.0.0.1:{port}#hunter2",
    "empty-host": "http://",
    "unparsable-with-password": "http://user:hunter2@[::1",
    "password-with-slash": "https://user:hunter2/x@127.0.0.1:{port}",
    "password-with-hash": "https://user:hunter2#x@127.0.0.1:{port}",
    "password-with-newline": "http://user:hunter2\n@[::1",
}


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("url", BAD_BASE_URLS.values(), ids=list(BAD_BASE_URLS))
def test_a_bad_base_url_is_refused_before_any_request(
    front: Front, server: FakeMountsea, url: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url.format(port=server.url.rsplit(":", 1)[1])
    if how == "environment":
        monkeypatch.setenv("MOUNTSEA_BASE_URL", url)
    with pytest.raises(mountsea.ConfigurationError) as caught:
        front.run(lambda c: c.producer.tasks.get("t"), api_key=SECRET, base_url=url if how == "argument" else None)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, mountsea.MountseaError)
    assert "base_url" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "S3cr3t" not in str(caught.value)
    assert_secret_absent(caught.value)
    assert server.request_count() == 0


@pytest.mark.parametrize("name", ["user-and-password", "no-scheme", "key-as-user"])
def test_the_cli_refuses_a_bad_base_url_without_quoting_credentials(server: FakeMountsea, name: str) -> None:
    url = BAD_BASE_URLS[name].format(port=server.url.rsplit(":", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    env.update(MOUNTSEA_API_KEY=SECRET, MOUNTSEA_BASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "mountsea", "get", "producer", "t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    # The CLI names where the URL came from (issue 12), not the library's argument.
    assert done.stderr.startswith("mountsea: error: $MOUNTSEA_BASE_URL")
    assert "hunter2" not in done.stderr
    assert SECRET not in done.stderr
    assert server.request_count() == 0


def test_an_escaped_echo_of_a_key_starting_with_a_hex_digit_keeps_the_answer_valid(front: Front) -> None:
    # "\u0035" is "5": masking the bytes would have cut the escape in two and broken the JSON.
    key = "5'7Zw-S3cr3t-Key"
    with FakeMountsea(api_key=key) as fake:
        body = '{"taskId": "t", "status": "failed", "errorMessage": "bad key \\u0035' + key[1:] + '"}'
        fake.inject(Fault.status(200, body=body))
        task = front.run(lambda c: c.producer.tasks.get("t"), api_key=key, base_url=fake.url)
    assert task.error_message == "bad key [secure]"
