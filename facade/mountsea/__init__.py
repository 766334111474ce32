"""mountsea: check on and wait for the asynchronous tasks of the Mountsea AI API.

This package is the hand-written facade over the generated clients
``mountsea_producer_api`` and ``mountsea_xai_api``.
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    # Served lazily from the installed metadata: no version string to keep in sync.
    if name == "__version__":
        from importlib.metadata import version

        return version("mountsea")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
