"""pytest plugin: the ``mountsea_server`` fixture, a started `FakeMountsea` per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import FakeMountsea


@pytest.fixture
def mountsea_server() -> Iterator[FakeMountsea]:
    """A started `FakeMountsea` (API key ``"test-key"``), stopped after the test."""
    with FakeMountsea() as server:
        yield server
