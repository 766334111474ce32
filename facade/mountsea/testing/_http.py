"""The HTTP side of `FakeMountsea`: a threading HTTP/1.1 server that can misbehave on request."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import FakeMountsea, Fault, RecordedRequest, _Headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, fake: FakeMountsea) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.changed = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet about clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and wait (up to `timeout`) for their handlers to finish."""
        with self.changed:
            for conn in self.connections:
                _shutdown(conn)
            self.stopping.set()
            self.changed.wait_for(lambda: not self.connections, timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMountsea"
    disable_nagle_algorithm = True
    server: _Server
    connection: socket.socket
    abort = False

    def setup(self) -> None:
        super().setup()
        with self.server.changed:
            self.server.connections.add(self.connection)
            if self.server.stopping.is_set():
                _shutdown(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.changed:
                self.server.connections.discard(self.connection)
                self.server.changed.notify_all()
            if self.abort:  # all file objects are closed: closing with SO_LINGER 0 sends a RST
                self.connection.close()

    def version_string(self) -> str:
        """The Server header: without the trailing space of an empty ``sys_version``."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        """Serve one request: a queued fault, or the normal answer."""
        fake = self.server.fake
        with fake._in_request():
            headers = {k.lower(): v for k, v in self.headers.items()}
            request, n, fault = fake._receive(self.command, self.path, headers)
            self._serve(fault, n, request)

    def __getattr__(self, name: str) -> Any:
        """Serve every method (TRACE, PROPFIND...) as GET is: `_answer` turns it down with a 405."""
        if name.startswith("do_"):
            return self.do_GET
        raise AttributeError(name)

    def _serve(self, fault: Fault | None, n: int, request: RecordedRequest) -> None:
        if fault is None or fault.kind in ("delay", "slow_body", "trickle"):
            if fault and fault.kind == "delay":
                self.server.stopping.wait(fault.seconds)
            code, headers, body = self.server.fake._answer(request, n)
            if fault and fault.kind == "trickle":
                return self._trickle(n, code, headers, body, fault.seconds)
            return self._send(n, code, headers, body, pause=fault.seconds if fault and fault.kind == "slow_body" else 0)
        kind = fault.kind
        if kind in ("status", "html", "redirect"):
            return self._send(n, fault.code, fault.headers, fault.body)
        if kind == "drop":
            self.close_connection = True
            return None
        body = json.dumps({"taskId": request.task_id or "", "status": "processing", "traceId": f"trace-{n}"}).encode()
        json_type = (("Content-Type", "application/json"),)
        if kind == "truncated":
            return self._send(n, 200, json_type, body[: len(body) // 2])
        self.close_connection = True
        if kind == "length_mismatch":
            return self._send(n, 200, json_type, body + b" " * 100, sent=len(body))
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort = True
        return self._send(n, 200, json_type, body, sent=len(body) // 2)

    def _send(self, n: int, code: int, headers: _Headers, body: bytes, *, sent: int = -1, pause: float = 0) -> None:
        """Answer with a Content-Length of the whole body but write only `sent` bytes of it (-1: all).

        With `pause`, sleep that long halfway through the body.
        """
        no_body = code < 200 or code in (204, 304)
        self.send_response(code)
        self.send_header("X-Request-Id", f"req-{n}")
        if self.command != "GET":
            self.send_header("Connection", "close")  # a request body may still be unread
        for name, value in headers:
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.close_connection = self.close_connection or code < 200  # a 1xx is never followed here
        self.end_headers()
        if no_body or self.command == "HEAD":
            return
        body = body if sent < 0 else body[:sent]
        self.wfile.write(body[: len(body) // 2])
        if pause:
            self.wfile.flush()
            self.server.stopping.wait(pause)
        self.wfile.write(body[len(body) // 2 :])
        self.wfile.flush()

    def _trickle(self, n: int, code: int, headers: _Headers, body: bytes, seconds: float) -> None:
        """The whole answer, a byte every ``seconds``, until it is sent or the server stops."""
        self.send_response(code)
        self.send_header("X-Request-Id", f"req-{n}")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        # The status line and headers are buffered by BaseHTTPRequestHandler until end_headers():
        # take them from its buffer to send them slowly too.
        buffered: list[bytes] = self.__dict__.pop("_headers_buffer", [])
        raw = b"".join(buffered) + b"\r\n" + body
        for i in range(len(raw)):
            if self.server.stopping.wait(seconds):
                self.close_connection = True
                return
            self.wfile.write(raw[i : i + 1])
            self.wfile.flush()


def _shutdown(conn: socket.socket) -> None:
    with suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
