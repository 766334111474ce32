"""The per-call overhead, single-call CPU and import time benchmarks.

``python calls.py FRONT URL API_KEY`` is the single-call CPU worker (see `single_call_cpu`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fakeserver import ServerProcess

import mountsea
from mountsea._base import DEFAULT_LIMITS, DEFAULT_TIMEOUT, MAX_REDIRECTS  # for a bare client configured alike


@dataclass(frozen=True)
class Throughput:
    """``get()`` versus bare ``httpx.Client.get`` calls per second, interleaved over rounds."""

    facade: float  # median calls per second
    bare: float
    ratio: float  # median over the rounds of facade / bare
    rounds: int
    calls_per_round: int


@dataclass(frozen=True)
class ImportTimes:
    """Median cumulative import times (``-X importtime``), milliseconds."""

    mountsea: float
    httpx: float
    asyncio_in_mountsea: float  # the part of mountsea's time spent importing asyncio
    runs: int

    @property
    def ratio(self) -> float:
        """``import mountsea`` over ``import httpx``."""
        return self.mountsea / self.httpx


def _rate(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return calls / (time.perf_counter() - started)


def per_call_overhead(server: ServerProcess, *, rounds: int = 15, seconds: float = 0.35) -> Throughput:
    """Time ``client.producer.tasks.get()`` and a bare GET of the same URL, round by round.

    Each round times a block of each (about ``seconds`` long), alternating which goes
    first; the task's status never changes, and the bare call does not parse the body.
    """
    server.reset()
    server.add([("producer", "t", ["processing"], None)])
    headers = {"Authorization": f"Bearer {server.api_key}", "Accept": "application/json"}
    url = f"{server.url}/producer/tasks"
    with (
        mountsea.Mountsea(server.api_key, base_url=server.url) as client,
        httpx.Client(
            limits=DEFAULT_LIMITS, max_redirects=MAX_REDIRECTS, timeout=DEFAULT_TIMEOUT, follow_redirects=True
        ) as bare,
    ):

        def facade_call() -> object:
            return client.producer.tasks.get("t")

        def bare_call() -> object:
            return bare.get(url, params={"taskId": "t"}, headers=headers)

        if client.producer.tasks.get("t").raw_status != "processing" or bare_call() is None:
            msg = "the per-call benchmark's task is not as scripted"
            raise RuntimeError(msg)
        warm = min(_rate(facade_call, 200), _rate(bare_call, 200))
        calls = max(100, int(warm * seconds))
        facade_rates: list[float] = []
        bare_rates: list[float] = []
        for i in range(rounds):
            if i % 2:
                bare_rates.append(_rate(bare_call, calls))
                facade_rates.append(_rate(facade_call, calls))
            else:
                facade_rates.append(_rate(facade_call, calls))
                bare_rates.append(_rate(bare_call, calls))
    ratios = [f / b for f, b in zip(facade_rates, bare_rates, strict=True)]
    return Throughput(
        statistics.median(facade_rates), statistics.median(bare_rates), statistics.median(ratios), rounds, calls
    )


SINGLE_FRONTS = ("sync", "async", "async-httpx", "async-httpx-no-sniffio", "aiohttp")
SINGLE_BLOCKS = 7  # timed blocks per worker; the cheapest counts
SINGLE_CALLS = 300  # calls per block


@dataclass(frozen=True)
class SingleCallCPU:
    """Client CPU of one ``get()`` after another, microseconds, per front end (the cheapest of each)."""

    us: dict[str, float]
    workers: int  # fresh processes per front end, interleaved

    def ratio(self, front: str) -> float:
        """``front``'s CPU per call over the sync client's."""
        return self.us[front] / self.us["sync"]


class _NoSniffio:
    """Makes ``import sniffio`` fail as it does when it is not installed: after a walk of sys.path."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "sniffio":
            importlib.machinery.PathFinder.find_spec("sniffio_is_not_installed")  # the search a missing module costs
            msg = "No module named 'sniffio'"
            raise ModuleNotFoundError(msg, name="sniffio")


def _cheapest_block(call: Callable[[], object]) -> float:
    for _ in range(100):
        call()  # warm up: connections, caches
    blocks = []
    for _ in range(SINGLE_BLOCKS):
        started = time.process_time()
        for _ in range(SINGLE_CALLS):
            call()
        blocks.append((time.process_time() - started) / SINGLE_CALLS * 1e6)
    return min(blocks)


async def _cheapest_block_async(call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(100):
        await call()
    blocks = []
    for _ in range(SINGLE_BLOCKS):
        started = time.process_time()  # every thread of the process
        for _ in range(SINGLE_CALLS):
            await call()
        blocks.append((time.process_time() - started) / SINGLE_CALLS * 1e6)
    return min(blocks)


def _single_call_worker(front: str, url: str, key: str) -> float:
    """CPU per call of one front end, in this (fresh) process."""
    if front == "sync":
        with mountsea.Mountsea(key, base_url=url) as client:
            return _cheapest_block(lambda: client.producer.tasks.get("t"))

    async def main() -> float:
        async with contextlib.AsyncExitStack() as stack:
            http_client: httpx.AsyncClient | mountsea.DefaultAioHttpClient | None = None
            if front == "aiohttp":
                http_client = mountsea.DefaultAioHttpClient()
            elif front.startswith("async-httpx"):  # left open by AsyncMountsea: closed here
                http_client = await stack.enter_async_context(httpx.AsyncClient(limits=DEFAULT_LIMITS))
            client = await stack.enter_async_context(mountsea.AsyncMountsea(key, base_url=url, http_client=http_client))
            return await _cheapest_block_async(lambda: client.producer.tasks.get("t"))

    if front == "async-httpx-no-sniffio":
        sys.meta_path.insert(0, _NoSniffio)  # type: ignore[arg-type]
        sys.modules.pop("sniffio", None)
    return asyncio.run(main())


def single_call_cpu(server: ServerProcess, *, workers: int = 3) -> SingleCallCPU:
    """CPU per sequential ``get()`` of each of `SINGLE_FRONTS`, each in fresh processes, interleaved.

    Each worker times `SINGLE_BLOCKS` blocks of `SINGLE_CALLS` calls with ``time.process_time`` (every thread of the process)
    and keeps the cheapest block; the cheapest worker counts. The task never changes.
    """
    server.reset()
    server.add([("producer", "t", ["processing"], None)])
    seen: dict[str, list[float]] = {front: [] for front in SINGLE_FRONTS}
    for i in range(workers):
        for front in SINGLE_FRONTS[::-1] if i % 2 else SINGLE_FRONTS:
            done = subprocess.run(
                [sys.executable, __file__, front, server.url, server.api_key],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            seen[front].append(json.loads(done.stdout)["us"])
    return SingleCallCPU({front: min(values) for front, values in seen.items()}, workers)


def _cumulative_ms(module: str, env: dict[str, str]) -> dict[str, float]:
    """Cumulative ``-X importtime`` of each module ``import module`` loads, in a fresh interpreter, ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # Lines read "import time: <self us> | <cumulative us> | <indented name>".
    times: dict[str, float] = {}
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            times[fields[2].strip()] = int(fields[1]) / 1000
    if module not in times:
        msg = f"no -X importtime line for {module!r}"
        raise RuntimeError(msg)
    return times


def import_times(*, runs: int = 9) -> ImportTimes:
    """Median cumulative import time of ``mountsea`` and of ``httpx`` alone, interleaved.

    Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` (warmed first), as after a
    wheel install: an editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise
    compile mountsea from source at every import while httpx's ``.pyc`` files exist.
    """
    with tempfile.TemporaryDirectory(prefix="mountsea-bench-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        samples: dict[str, list[float]] = {"mountsea": [], "httpx": []}
        asyncio_part: list[float] = []
        for module in samples:
            _cumulative_ms(module, env)  # warm the cache
        for _ in range(runs):
            for module, times in samples.items():
                measured = _cumulative_ms(module, env)
                times.append(measured[module])
                if module == "mountsea":
                    asyncio_part.append(measured.get("asyncio", 0.0))
    return ImportTimes(
        statistics.median(samples["mountsea"]),
        statistics.median(samples["httpx"]),
        statistics.median(asyncio_part),
        runs,
    )


if __name__ == "__main__":
    print(json.dumps({"us": _single_call_worker(*sys.argv[1:4])}))
