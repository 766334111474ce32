"""mountsea: check on and wait for the asynchronous tasks of the Mountsea AI API.

``Mountsea`` (sync) and ``AsyncMountsea`` (asyncio) read tasks of both services, music (``client.producer``) and
xAI (``client.xai``), as one `Task` type, and wait for them with one deadline, retries and typed errors. The
generated clients ``mountsea_producer_api`` and ``mountsea_xai_api`` stay behind this facade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _errors
from ._aiohttp import DefaultAioHttpClient
from ._client import Mountsea
from ._errors import *  # noqa: F403  (every exception class: their list is _errors.__all__)
from ._retry import PollPolicy
from ._task import TERMINAL_STATUSES, Task, TaskRef, TaskStatus

if TYPE_CHECKING:  # imported on first use: asyncio alone costs as much as the rest of mountsea
    from ._async_client import AsyncMountsea as AsyncMountsea

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncMountsea",
    "DefaultAioHttpClient",
    "Mountsea",
    "PollPolicy",
    "Task",
    "TaskRef",
    "TaskStatus",
]
__all__ += _errors.__all__

# Public names say `mountsea.Task`, not `mountsea._task.Task`, in reprs and tracebacks.
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value


def __getattr__(name: str) -> Any:
    if name == "AsyncMountsea":
        from ._async_client import AsyncMountsea

        AsyncMountsea.__module__ = __name__
        globals()[name] = AsyncMountsea  # once: later lookups do not come here
        return AsyncMountsea
    # Served lazily from the installed metadata: no version string to keep in sync.
    if name == "__version__":
        from importlib.metadata import version

        return version("mountsea")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
