"""The per-call overhead and import time benchmarks."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

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
