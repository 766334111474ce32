"""`DefaultAioHttpClient`: an async driver on aiohttp (the ``mountsea[aiohttp]`` extra), httpx off its hot path.

aiohttp is imported when the driver is built, never by ``import mountsea``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, cast

from ._errors import APIConnectionError, APIError, APITimeoutError
from ._response import Answer, Request, closed_with_the_loop, request_error

if TYPE_CHECKING:
    import asyncio

    import aiohttp


class DefaultAioHttpClient:
    """Run every request of a client on aiohttp: ``AsyncMountsea(http_client=DefaultAioHttpClient())`` (or `Mountsea`).

    ``limit`` caps the open connections. Proxies, ``.netrc`` and ``SSL_CERT_FILE`` are not read from the environment
    (aiohttp's ``trust_env=False``); certificates are checked against the system's store. aiohttp speaks HTTP/1.1 only.
    """

    def __init__(self, *, limit: int = 100) -> None:
        try:
            import aiohttp  # noqa: F401  (only to fail early, with the fix in the message)
        except ImportError as exc:
            msg = "DefaultAioHttpClient needs aiohttp: pip install 'mountsea[aiohttp]'"
            raise RuntimeError(msg) from exc
        self._limit, self._max_redirects, self._headers = limit, 0, cast(Mapping[str, str], {})
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def _bind(self, headers: Mapping[str, str], max_redirects: int) -> None:
        """Take the client's headers and redirect limit (no I/O: the session is made on first use)."""
        self._headers, self._max_redirects = headers, max_redirects

    async def send(self, request: Request) -> Answer | APIError:
        """GET ``request.url``: the answer, or the `APIError` for a transport failure."""
        import asyncio  # here, as aiohttp: `import mountsea` leaves asyncio unloaded for sync programs

        import aiohttp

        # A session belongs to the running loop: one kept past asyncio.run is closed as that loop ends, and the
        # next loop gets its own.
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._loop, self._session = (
                loop,
                aiohttp.ClientSession(
                    headers=dict(self._headers),
                    connector=aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=5.0),
                    trust_env=False,
                ),
            )
            # aiohttp would resend a GET once, unseen, on a broken connection: our own retries (counted) do it.
            self._session._retry_connection = False
            self._closer = closed_with_the_loop(self._session.close)
            await anext(self._closer)
        t = request.timeout
        timeout = aiohttp.ClientTimeout(
            total=request.budget,
            # aiohttp's `connect` covers waiting for a pooled connection and opening a new one.
            connect=None if t.pool is None or t.connect is None else t.pool + t.connect,
            sock_connect=t.connect,
            sock_read=t.read,  # aiohttp has no write timeout: `total` bounds a stuck write
            ceil_threshold=math.inf,  # aiohttp rounds timeouts >= 5 s up to a whole second otherwise
        )
        try:
            # aiohttp gives up once `redirects >= max_redirects` (0: never); httpx follows max_redirects of them. On a
            # redirect to another origin aiohttp drops Authorization (and cookies), for every later hop too.
            async with self._session.get(
                request.url, timeout=timeout, allow_redirects=True, max_redirects=self._max_redirects + 1
            ) as response:
                return Answer(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, OSError, UnicodeError) as exc:  # the one translation boundary (UnicodeError: IDNA)
            error = _translate(request, exc)
            error.__cause__ = exc
            return error

    async def aclose(self) -> None:
        """Close every connection; the next `send` opens a new session."""
        closer, self._session, self._closer = self._closer, None, None
        if closer is not None:
            await closer.aclose()


def _translate(request: Request, exc: Exception) -> APIError:
    """The mountsea error for an aiohttp, asyncio or OS failure."""
    import aiohttp

    if isinstance(exc, aiohttp.TooManyRedirects):
        return request_error(request, f"more than {len(exc.history) - 1} redirects", kind=APIError)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__  # never headers
    # A ConnectionTimeoutError is the one TimeoutError before connecting (`total` and `sock_read`
    # come after); a ClientConnectorError is refused, DNS, TLS handshake or certificate. Any other
    # failure (dropped, reset, cut short, badly framed, redirected to an invalid URL) is retried.
    kind = APITimeoutError if isinstance(exc, TimeoutError) else APIConnectionError
    connecting = isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError)
    return request_error(request, detail, kind=kind, connecting=connecting)
