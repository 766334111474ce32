"""Benchmark servers that are not the bottleneck, each in its own process so its CPU is counted apart.

* `Nginx`: nginx (Debian's ``nginx-light``) on 127.0.0.1 answering every GET with a completed
  TaskResultDto for the ``taskId`` asked, over plain HTTP/1.1 and over TLS offering HTTP/2 by
  ALPN (a ``trustme`` certificate; ``ca_file`` is its CA, for ``SSL_CERT_FILE``).
* `LatencyServer`: a small asyncio HTTP/1.1 server that answers the same way after `LATENCY`
  seconds, as an API far away would (nginx has no delay of its own).

``cpu_seconds()`` reads the server process's user + system time from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fakeserver import Closing, reap

LATENCY = 0.1  # seconds the latency server waits before each answer
BODY = (
    '{"taskId": "%s", "status": "completed", "createdAt": "2026-11-23T08:00:00.000Z", '
    '"finishedAt": "2026-11-23T08:01:00.000Z", "result": {"url": "https://cdn.example/song.mp3"}, '
    '"traceId": "trace-1"}'
)
NGINX_CONF = """
daemon off;
master_process off;  # one process, the one we started: its CPU is the server's CPU
worker_rlimit_nofile 4096;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        http2_max_concurrent_streams 1000;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_binary() -> str:
    """The nginx executable; ``make bench`` installs Debian's nginx-light when it is missing."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        msg = "nginx is not installed: apt-get install nginx-light (make bench does it)"
        raise RuntimeError(msg)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"{what} exited with code {proc.returncode}"
            raise RuntimeError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    msg = f"{what} did not listen on 127.0.0.1:{port}"
    raise RuntimeError(msg)


class _Process(Closing):
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far."""
        return cpu_seconds(self.proc.pid)

    def close(self) -> None:
        """Stop the server."""
        self.proc.terminate()
        reap(self.proc)


class Nginx(_Process):
    """nginx with a config of its own in a temporary directory; ``url`` (HTTP/1.1) and ``tls_url`` (h2 or 1.1)."""

    def __init__(self) -> None:
        import trustme  # a dev dependency: the certificate nginx presents

        self._dir = tempfile.TemporaryDirectory(prefix="mountsea-bench-nginx-")
        where = Path(self._dir.name)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(where / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
        ca.cert_pem.write_to_path(str(where / "ca.pem"))
        self.ca_file = str(where / "ca.pem")
        port, tls_port = _free_port(), _free_port()
        body = BODY.replace("%s", "$arg_taskId")
        conf = NGINX_CONF.format(dir=where, port=port, tls_port=tls_port, body=body)
        (where / "nginx.conf").write_text(conf, encoding="utf-8")
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(where), "-c", str(where / "nginx.conf")])
        self.url = f"http://127.0.0.1:{port}"
        self.tls_url = f"https://127.0.0.1:{tls_port}"
        try:
            _wait_for(port, self.proc, "nginx")
            _wait_for(tls_port, self.proc, "nginx")
        except RuntimeError:
            self.close()
            raise

    def close(self) -> None:
        """Stop nginx and remove its directory."""
        super().close()
        self._dir.cleanup()


class LatencyServer(_Process):
    """`serve_with_latency` in a child process; ``url`` is where it listens."""

    def __init__(self) -> None:
        port = _free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, str(port)])
        self.url = f"http://127.0.0.1:{port}"
        _wait_for(port, self.proc, "the latency server")


async def serve_with_latency(port: int) -> None:
    """Answer each GET (HTTP/1.1, kept alive) with a completed TaskResultDto after `LATENCY` seconds."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                target = head.split(b" ", 2)[1].decode()
                task_id = target.partition("taskId=")[2].partition("&")[0]
                await asyncio.sleep(LATENCY)
                body = (BODY % task_id).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                )
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve_with_latency(int(sys.argv[1])))
