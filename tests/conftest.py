"""Shared test configuration."""

from __future__ import annotations

import pytest

from tests.helpers import Front


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop the facade supports."""
    return "asyncio"


@pytest.fixture(params=["sync", "async"])
def front(request: pytest.FixtureRequest) -> Front:
    """Each test using this runs once through `Mountsea` and once through `AsyncMountsea`."""
    return Front(request.param)


@pytest.fixture(params=["sync", "sync-aiohttp", "async", "aiohttp"])
def any_front(request: pytest.FixtureRequest) -> Front:
    """Real-socket tests run through every driver: httpx on threads or aiohttp on a loop, from either client."""
    return Front(request.param)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own key, base URL or log setting."""
    for name in ("MOUNTSEA_API_KEY", "MOUNTSEA_BASE_URL", "MOUNTSEA_LOG"):
        monkeypatch.delenv(name, raising=False)
