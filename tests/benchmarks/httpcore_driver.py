"""A prototype async driver on httpcore's pool directly, without httpx's client layer: a benchmark contender.

httpx.AsyncClient costs about 250 µs of CPU per request more than the httpcore pool under it
(the sync httpx.Client costs about what the async pool does). A driver behind the same seam as
`DefaultAioHttpClient` (``send(Request) -> Answer``, ``aclose()``, ``_bind(headers, max_redirects)``)
can skip that layer and keep httpx's TLS defaults (`httpx.create_ssl_context`, so
``SSL_CERT_FILE``), HTTP/2 (``http2=True``) and its exception types' meaning. Not wired into
the facade: `throughput_worker.py` and `calls.py` measure it, for the lead to decide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from mountsea._errors import APIError, APITimeoutError
from mountsea._response import Answer, Request, request_error

REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpcoreDriver:
    """GETs on one `httpcore.AsyncConnectionPool`; redirects followed here, as httpx follows them."""

    def __init__(self, *, http2: bool = False) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=100, max_keepalive_connections=64, http2=http2
        )
        self._headers: list[tuple[bytes, bytes]] = []
        self._max_redirects = 0

    def _bind(self, headers: Mapping[str, str], max_redirects: int) -> None:
        self._headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self._max_redirects = max_redirects

    async def send(self, request: Request) -> Answer:
        t = request.timeout
        extensions = {"timeout": {"connect": t.connect, "read": t.read, "write": t.write, "pool": t.pool}}
        url, headers = request.url, self._headers
        try:
            async with asyncio.timeout(request.budget):  # the deadline bounds the request as a whole
                for _ in range(self._max_redirects + 1):
                    response = await self._pool.request("GET", url, headers=headers, extensions=extensions)
                    location = next((v for k, v in response.headers if k.lower() == b"location"), None)
                    if response.status not in REDIRECTS or location is None:
                        return Answer(response.status, httpx.Headers(response.headers), response.content)
                    target = urljoin(url, location.decode("latin-1"))
                    if _origin(target) != _origin(url):  # Authorization stays on its origin
                        headers = [(k, v) for k, v in headers if k.lower() != b"authorization"]
                    url = target
        except httpcore.ConnectTimeout as exc:
            raise request_error(request, _detail(exc), kind=APITimeoutError, connecting=True) from exc
        except (httpcore.TimeoutException, TimeoutError) as exc:
            raise request_error(request, _detail(exc), kind=APITimeoutError) from exc
        except httpcore.ConnectError as exc:
            raise request_error(request, _detail(exc), connecting=True) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
            raise request_error(request, _detail(exc)) from exc
        raise request_error(request, f"more than {self._max_redirects} redirects", kind=APIError)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
