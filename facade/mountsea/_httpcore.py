"""`HttpcoreSender`, `AsyncMountsea`'s default: httpcore's HTTP/1.1 connections on asyncio streams, no httpx client.

Measured per request against the sync client: httpx's async client costs 1.6x its CPU, httpcore's pool on anyio 1.25x,
and that pool's cost grows with its open connections (it scans them all twice a request: 2 ms at 64). httpcore's
connections on plain asyncio streams, kept in a free list, cost what the sync client does, at any concurrency. httpx
still gives the TLS context (``SSL_CERT_FILE``) and the limits; redirects are followed here as httpx follows them,
``Authorization`` kept to its origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import httpcore
import httpx

from ._errors import APIError
from ._response import Answer, Request, closed_with_the_loop, origin, request_error, transport_error

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class HttpcoreSender:
    """GETs on the connections of the running loop, following redirects."""

    def __init__(self, headers: Mapping[str, str], limits: httpx.Limits, max_redirects: int) -> None:
        # No Accept-Encoding would mean "any coding is fine" (RFC 9110): ask for the body as it is.
        self._headers = [(k.encode(), v.encode()) for k, v in {**headers, "Accept-Encoding": "identity"}.items()]
        self._limits, self._max_redirects = limits, max_redirects
        self._ssl = httpx.create_ssl_context()  # here, as httpx does: loading the CAs takes a while, off the loop
        self._pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    async def send(self, request: Request) -> Answer | APIError:
        """GET ``request.url``, following redirects: the answer, or the `APIError` for a transport failure."""
        if self._pool is None or self._loop is not asyncio.get_running_loop():
            self._pool = await self._open()
        pool, url, headers, started = self._pool, request.url, self._headers, time.monotonic()
        try:
            for _ in range(self._max_redirects + 1):
                response = await pool.request(url, headers, request.timeout)
                got = httpx.Headers(response.headers)
                location = got.get("location")
                if response.status not in _REDIRECTS or location is None:
                    body = response.content
                    if got.get("content-encoding", "identity").lower() != "identity":  # compressed though not asked
                        body = httpx.Response(response.status, headers=got, content=body).content  # httpx's decoders
                    return Answer(response.status, got, body, time.monotonic() - started)
                source = httpx.URL(url)
                target = source.join(location)  # as httpx reads it (IDNA...)
                if target.scheme not in {"http", "https"} or not 0 < (target.port or 80) < 65536:
                    return request_error(request, "redirected to a URL that is not http(s) or has no valid port")
                if origin(target) != origin(source):  # Authorization stays on its origin
                    headers = [(k, v) for k, v in headers if k.lower() != b"authorization"]
                url = str(target)
        except (httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: a host IDNA cannot encode
            return request_error(request, f"invalid URL in the Location header: {exc}")
        except (
            httpx.DecodingError,  # a body that its Content-Encoding does not decode, as httpx says it
            httpcore.TimeoutException,
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
        ) as exc:
            return transport_error(exc, request)
        return request_error(request, f"more than {self._max_redirects} redirects", kind=APIError)

    async def _open(self) -> _Pool:
        """A pool for the running loop, closed by `aclose()` or else as the loop shuts down (at asyncio.run's end).

        Connections belong to the loop that opened them: a client kept past one ``asyncio.run`` opens new ones in
        the next. The loop closes the async generators it ran before it closes (``shutdown_asyncgens``), so one
        suspended in `closed_with_the_loop` closes the pool there, no socket left for the GC to warn about.
        """
        pool = _Pool(self._ssl, self._limits)
        self._loop, self._closer = asyncio.get_running_loop(), closed_with_the_loop(pool.aclose)
        await anext(self._closer)  # runs to its yield at once: no other request comes in between
        return pool

    async def aclose(self) -> None:
        """Close every connection; the next `send` opens a new pool."""
        closer, self._pool, self._closer = self._closer, None, None
        if closer is not None:
            await closer.aclose()


class _Pool:
    """httpcore's HTTP/1.1 connections, one request at a time each; the idle ones kept per origin, last used first."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._ssl, self._keepalive_expiry = ssl_context, limits.keepalive_expiry
        self._keep = limits.max_keepalive_connections or 0  # idle connections kept per origin
        self._slots = asyncio.Semaphore(limits.max_connections or 1_000_000)
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._backend, self._closed = _AsyncioBackend(), False

    async def request(self, url: str, headers: list[tuple[bytes, bytes]], timeout: httpx.Timeout) -> httpcore.Response:
        target = httpcore.URL(url)
        origin = target.origin
        idle = self._idle.setdefault((origin.scheme, origin.host, origin.port), [])
        if self._slots.locked():  # every connection busy: wait at most the pool timeout for one
            async with _failing_as(httpcore.PoolTimeout, httpcore.PoolTimeout, timeout.pool):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        if b":" in origin.host:  # httpcore writes an IPv6 literal's Host without its brackets
            default = origin.port == (443 if origin.scheme == b"https" else 80)
            headers = [*headers, (b"Host", b"[%s]" % origin.host + (b"" if default else b":%d" % origin.port))]
        try:
            for end in (0, -1):  # the server closed it, or it sat idle past keepalive_expiry: at either end
                while idle and idle[end].has_expired():
                    await idle.pop(end).aclose()
            connection = idle.pop() if idle else self._connection(origin)
            try:
                response = await connection.request(
                    "GET", target, headers=headers, extensions={"timeout": timeout.as_dict()}
                )
            finally:  # a failed or cut-short request leaves its connection closed
                if connection.is_available() and len(idle) < self._keep and not self._closed:
                    idle.append(connection)
                else:
                    await connection.aclose()
            return response
        finally:
            self._slots.release()

    def _connection(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        return httpcore.AsyncHTTPConnection(
            origin, ssl_context=self._ssl, keepalive_expiry=self._keepalive_expiry, network_backend=self._backend
        )

    async def aclose(self) -> None:
        """Close the idle connections, and each busy one when its request ends."""
        self._closed, idle = True, [c for kept in self._idle.values() for c in kept]
        self._idle.clear()
        for connection in idle:
            await connection.aclose()


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections as asyncio streams: no anyio cancel scope around every read and write."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: object = None,
    ) -> _Stream:
        del socket_options  # the pool is built without any
        local = None if local_address is None else (local_address, 0)
        async with _failing_as(httpcore.ConnectTimeout, httpcore.ConnectError, timeout):
            # Addresses raced 0.25 s apart (happy eyeballs, as anyio does): a broken IPv6 route does not eat the timeout.
            return _Stream(*await asyncio.open_connection(host, port, local_addr=local, happy_eyeballs_delay=0.25))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        async with _failing_as(httpcore.ReadTimeout, httpcore.ReadError, timeout):
            return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        async with _failing_as(httpcore.WriteTimeout, httpcore.WriteError, timeout):
            self._writer.write(buffer)
            await self._writer.drain()

    async def aclose(self) -> None:
        # At once, no TLS close_notify exchange that the loop could end in the middle of: the pool closes a
        # connection only when it is idle, broken or given up on, with nothing left to flush.
        with contextlib.suppress(RuntimeError):  # its loop is closed (a client kept past asyncio.run): left to the GC
            self._writer.transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> _Stream:
        async with _failing_as(httpcore.ConnectTimeout, httpcore.ConnectError, timeout):
            await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection the server closed or wrote on (a 408): httpcore opens another
            unread = len(getattr(self._reader, "_buffer", b""))  # asyncio reads ahead into it; no public accessor
            return bool(unread) or self._reader.at_eof() or self._writer.is_closing()
        return self._writer.get_extra_info({"client_addr": "sockname", "server_addr": "peername"}.get(info, info))


class _failing_as:  # lower case: used as ``async with``, like asyncio.timeout
    """Bound a network step by ``timeout``; its timeout and OS errors become the httpcore errors the pool expects."""

    def __init__(self, timed_out: type[Exception], failed: type[Exception], timeout: float | None) -> None:
        self._timed_out, self._failed, self._timeout = timed_out, failed, asyncio.timeout(timeout)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)  # type: ignore[arg-type]
        except TimeoutError as timed_out:
            raise self._timed_out(str(timed_out) or "timed out") from timed_out
        if isinstance(exc, OSError | UnicodeError):  # refused, reset, DNS, TLS (an ssl.SSLError); a host IDNA refuses
            detail = f"{type(exc).__name__}: {exc}"
            raise self._failed(detail) from exc
