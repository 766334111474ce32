"""pytest plugin: the ``mountsea_server`` fixture, a started `FakeMountsea` per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import FakeMountsea


@pytest.fixture
def mountsea_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMountsea]:
    """A started `FakeMountsea` (API key ``"test-key"``), stopped after the test.

    For the test's duration, ``MOUNTSEA_API_KEY`` and ``MOUNTSEA_BASE_URL`` point at it, so
    that code building ``mountsea.Mountsea()`` itself talks to the fake, never to the real
    API with a real key; both are restored afterwards.
    """
    with FakeMountsea() as server:
        monkeypatch.setenv("MOUNTSEA_API_KEY", server.api_key)
        monkeypatch.setenv("MOUNTSEA_BASE_URL", server.url)
        yield server
