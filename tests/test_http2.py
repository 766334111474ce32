"""HTTP/2 where the server offers it, HTTP/1.1 otherwise, over real TLS sockets on 127.0.0.1.

`H2Server` is a small TLS server on the ``h2`` package that offers ``h2`` and ``http/1.1`` by
ALPN, records which one each connection chose, and answers every GET with a TaskResultDto.
`Mountsea(http2=True)` and `AsyncMountsea(http2=True)` trust its certificate (from ``trustme``)
through ``SSL_CERT_FILE``, which httpx 0.28 reads when it builds a client's SSL context.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

import mountsea
from mountsea.testing import FakeMountsea

KEY = "sk-http2-0123456789"


def get_statuses(front: str, base_url: str, task_ids: list[str], *, http2: bool = True) -> list[str]:
    """The final status of each task, from one ``wait_all`` of a `front` client built with ``http2``."""
    if front == "sync":
        with mountsea.Mountsea(KEY, base_url=base_url, http2=http2, max_retries=0) as client:
            return [task.status for task in client.producer.tasks.wait_all(task_ids, poll=0.01)]

    async def main() -> list[str]:
        async with mountsea.AsyncMountsea(KEY, base_url=base_url, http2=http2, max_retries=0) as client:
            return [task.status for task in await client.producer.tasks.wait_all(task_ids, poll=0.01)]

    return asyncio.run(main())


class H2Server:
    """A TLS server on 127.0.0.1 speaking HTTP/2 or HTTP/1.1, as each connection's ALPN chose."""

    def __init__(self, context: ssl.SSLContext) -> None:
        context.set_alpn_protocols(["h2", "http/1.1"])
        self.context = context
        self.protocols: list[str | None] = []  # one per connection, in order
        self.requests: list[dict[str, str]] = []  # the headers of each request (pseudo-headers included)
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.url = f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=self.context)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            await asyncio.gather(*self.handlers)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _answer(self, headers: dict[str, str]) -> bytes:
        self.requests.append(headers)
        task_id = parse_qs(urlsplit(headers[":path"]).query).get("taskId", [""])[0]
        return json.dumps({"taskId": task_id, "status": "completed", "result": {"url": "u"}}).encode()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        self.protocols.append(protocol)
        self.writers.add(writer)
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(handler)
        try:
            await (self._h2(reader, writer) if protocol == "h2" else self._http11(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
                    body = self._answer({str(k): str(v) for k, v in event.headers or []})
                    reply = [
                        (":status", "200"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ]
                    conn.send_headers(event.stream_id, reply)
                    conn.send_data(event.stream_id, body, end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()

    async def _http11(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            line, *fields = head.decode().split("\r\n")
            method, target, _ = line.split(" ")
            headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
            body = self._answer({":method": method, ":path": target, **headers})
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[H2Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    h2_server = H2Server(context)
    try:
        yield h2_server
    finally:
        h2_server.close()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built from now on trust the test CA, and only it."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("front", ["sync", "async"])
def test_http2_is_negotiated_where_the_server_offers_it(front: str, server: H2Server) -> None:
    ids = [f"t{i}" for i in range(8)]
    assert get_statuses(front, server.url, ids) == ["completed"] * 8
    assert server.protocols == ["h2"]  # one connection, eight streams on it
    assert sorted(r[":path"] for r in server.requests) == sorted(f"/producer/tasks?taskId={i}" for i in ids)
    assert {(r[":method"], r["authorization"], r["accept"]) for r in server.requests} == {
        ("GET", f"Bearer {KEY}", "application/json")
    }


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("front", ["sync", "async"])
def test_without_http2_the_same_server_speaks_http11(front: str, server: H2Server) -> None:
    assert get_statuses(front, server.url, ["a", "b"], http2=False) == ["completed", "completed"]
    assert set(server.protocols) == {"http/1.1"}
    assert sorted(r[":path"] for r in server.requests) == ["/producer/tasks?taskId=a", "/producer/tasks?taskId=b"]


@pytest.mark.parametrize("front", ["sync", "async"])
def test_http2_falls_back_to_http11_on_a_plain_http11_server(front: str) -> None:
    with FakeMountsea(api_key=KEY) as fake:
        fake.add_task("producer", "p", ["processing", "completed"])
        fake.add_task("producer", "q", ["completed"])
        assert get_statuses(front, fake.url, ["p", "q"]) == ["completed", "completed"]
        assert sorted(r.task_id or "" for r in fake.requests) == ["p", "p", "q"]


@pytest.mark.parametrize("front", ["sync", "async"])
def test_the_test_certificate_is_trusted_only_through_ssl_cert_file(
    front: str, server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(mountsea.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        get_statuses(front, server.url, ["t"])
    assert caught.value.connecting
    assert server.requests == []
