"""`AsyncMountsea`'s default sender (httpcore connections on asyncio streams), over real sockets.

The real-socket suites run it as the ``async`` front; these tests check what is its own: connections reused and
bounded, closed with the loop that opened them, a pool timeout, and a proxy from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import mountsea
from mountsea._httpcore import HttpcoreSender
from mountsea._response import Answer, Request

KEY = "sk-default-sender"


class CountingServer(http.server.ThreadingHTTPServer):
    """Answers every GET with a completed task, after ``delay`` seconds; counts the connections it is given."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.opened = self.open_now = self.peak = 0
        self.targets: list[str] = []
        self.delay = 0.0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, change: int) -> None:
        with self.lock:
            self.open_now += change
            self.opened += max(change, 0)
            self.peak = max(self.peak, self.open_now)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: CountingServer

    def setup(self) -> None:
        super().setup()
        self.server.count(+1)

    def finish(self) -> None:
        super().finish()
        self.server.count(-1)

    def do_GET(self) -> None:
        self.server.targets.append(self.path)
        time.sleep(self.server.delay)
        task_id = parse_qs(urlsplit(self.path).query)["taskId"][0]
        body = json.dumps({"taskId": task_id, "status": "completed", "result": {"url": "https://cdn.example/a"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer() as running:
        yield running
        running.shutdown()


def test_a_batch_reuses_its_connections_and_opens_no_more_than_its_concurrency(server: CountingServer) -> None:
    async def main() -> list[mountsea.Task]:
        async with mountsea.AsyncMountsea(KEY, base_url=server.url) as client:
            return await client.producer.tasks.wait_all([f"t{i}" for i in range(300)], max_concurrency=8)

    tasks = asyncio.run(main())
    assert [t.id for t in tasks] == [f"t{i}" for i in range(300)]
    assert all(t.status is mountsea.TaskStatus.COMPLETED for t in tasks)
    assert len(server.targets) == 300
    assert 1 <= server.opened <= 8  # every request after the first eight went on a kept connection


def test_a_client_kept_past_asyncio_run_closes_its_connections_with_that_loop(server: CountingServer) -> None:
    client = mountsea.AsyncMountsea(KEY, base_url=server.url)  # a module-level client, say

    async def read() -> mountsea.TaskStatus:
        return (await client.producer.tasks.get("t")).status

    assert asyncio.run(read()) is mountsea.TaskStatus.COMPLETED
    deadline = time.monotonic() + 5
    while server.open_now and time.monotonic() < deadline:  # closed as the loop ended, not by the GC
        time.sleep(0.01)
    assert (server.opened, server.open_now) == (1, 0)
    assert asyncio.run(read()) is mountsea.TaskStatus.COMPLETED  # a new loop: a new connection
    assert server.opened == 2
    gc.collect()  # no transport left behind: pytest turns a ResourceWarning into an error
    asyncio.run(client.aclose())


def test_a_request_waits_for_a_free_connection_at_most_the_pool_timeout(server: CountingServer) -> None:
    server.delay = 0.5
    sender = HttpcoreSender({"Authorization": f"Bearer {KEY}"}, httpx.Limits(max_connections=1), 5)
    timeout = httpx.Timeout(5.0, pool=0.1)

    async def main() -> list[object]:
        try:
            requests = [Request("producer", t, f"{server.url}/producer/tasks?taskId={t}", timeout, None) for t in "ab"]
            return await asyncio.gather(*(sender.send(r) for r in requests))
        finally:
            await sender.aclose()

    started = time.monotonic()
    first, second = asyncio.run(main())
    assert isinstance(first, Answer)
    assert first.status_code == 200
    assert isinstance(second, mountsea.APITimeoutError)
    assert not second.connecting
    assert time.monotonic() - started < 2
    assert server.opened == 1


def test_a_proxy_set_in_the_environment_is_used(server: CountingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def main() -> mountsea.Task:
        async with mountsea.AsyncMountsea(KEY, base_url="http://api.mountsea.example") as client:
            return await client.producer.tasks.get("t")

    assert asyncio.run(main()).status is mountsea.TaskStatus.COMPLETED
    assert server.targets == ["http://api.mountsea.example/producer/tasks?taskId=t"]  # absolute form: a proxy's


def test_an_idle_connection_the_server_wrote_on_is_not_reused() -> None:
    """A server that sends a 408 on an idle keep-alive connection and closes it: the next request opens another."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            body = json.dumps({"taskId": "t", "status": "completed"}).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            conn.sendall(head + body)
            time.sleep(0.2)  # idle: the server gives up on the connection, saying so first
            with contextlib.suppress(OSError):  # the client may have closed it already
                conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def main() -> list[mountsea.TaskStatus]:
        async with mountsea.AsyncMountsea(KEY, base_url=url, max_retries=0) as client:
            first = await client.producer.tasks.get("t")
            await asyncio.sleep(0.5)  # the 408 sits unread on the idle connection
            return [first.status, (await client.producer.tasks.get("t")).status]

    try:
        assert asyncio.run(main()) == [mountsea.TaskStatus.COMPLETED] * 2
        server.join(5)
        assert len(accepted) == 2
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
