"""Test helpers shared by several test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

import mountsea


def make_task(
    status: str = "pending", *, service: str = "producer", task_id: str = "t-1", **fields: Any
) -> mountsea.Task:
    known = status if status in mountsea.TaskStatus._value2member_map_ else "unknown"
    return mountsea.Task(id=task_id, service=service, status=known, raw_status=status, **fields)  # type: ignore[arg-type]


class Front:
    """Runs the same call through `Mountsea` or `AsyncMountsea`, on their default driver, aiohttp or an httpx.AsyncClient.

    ``front.run(lambda client: client.producer.tasks.get("t-1"), api_key=...)`` returns the
    call's result either way: for the async front end the lambda returns a coroutine,
    which is awaited inside a fresh event loop.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.is_sync = kind.startswith("sync")  # "sync" or "sync-aiohttp"
        self.made: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return self.kind

    def client(self, **kwargs: Any) -> mountsea.Mountsea | mountsea.AsyncMountsea:
        if self.kind.endswith("aiohttp"):
            kwargs.setdefault("http_client", mountsea.DefaultAioHttpClient())
        elif self.kind == "async-httpx" and "http_client" not in kwargs:  # what pytest-httpx can mock
            kwargs["http_client"] = self.made = httpx.AsyncClient()  # `run` closes it
        return mountsea.Mountsea(**kwargs) if self.is_sync else mountsea.AsyncMountsea(**kwargs)

    def run(self, call: Callable[[Any], Any], **kwargs: Any) -> Any:
        if self.is_sync:
            client = self.client(**kwargs)
            assert isinstance(client, mountsea.Mountsea)
            with client:
                return call(client)

        async def main() -> Any:
            client = self.client(**kwargs)
            assert isinstance(client, mountsea.AsyncMountsea)
            async with client:
                try:
                    return await call(client)
                finally:
                    if self.made is not None:
                        await self.made.aclose()

        return asyncio.run(main())
