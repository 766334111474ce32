"""Throughput and client CPU per request, each figure from a fresh `throughput_worker.py` process.

Against nginx (`servers.Nginx`, never the bottleneck): every contender at each concurrency
in `CONCURRENCIES`, `TASKS` tasks each completed on its first poll, `ROUNDS` rounds with
the contenders interleaved (the order turns each round), the best round kept (one without
errors, if any). Against the
latency server (`servers.LatencyServer`, 100 ms per answer): the contenders that make sense
over a long wire, at concurrency 64, compared with the latency bound ``concurrency / 0.1 s``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from servers import LATENCY, LatencyServer, Nginx
from throughput_worker import CONTENDERS

WORKER = Path(__file__).with_name("throughput_worker.py")
TASKS = 3_000
CONCURRENCIES = (16, 64)
ROUNDS = 3
LIMIT = "raw-aiohttp"  # the contender every other is compared with
LATENCY_CONCURRENCY = 64
LATENCY_TASKS = 1_280  # 20 round trips at concurrency 64: about 2 s at the bound
LATENCY_CONTENDERS = ("sync", "async", "async-httpx", "aiohttp", "raw-aiohttp")


@dataclass(frozen=True)
class Figure:
    """One worker run: requests per second, client CPU per request, and the server's CPU meanwhile."""

    contender: str
    concurrency: int
    requests: int
    wall: float
    cpu: float  # client CPU seconds
    server_cores: float  # server CPU seconds over the worker's whole life, per second measured
    how: str
    errors: list[str]  # the tasks the client's batch could not read (a BatchError), one message each

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        """Client CPU per request, microseconds."""
        return self.cpu / self.requests * 1e6


@dataclass(frozen=True)
class Results:
    """The best figure of each (contender, concurrency), and every server-CPU reading."""

    best: dict[tuple[str, int], Figure]
    latency: dict[str, Figure]
    max_server_cores: float  # the highest server CPU of any run against nginx
    max_latency_server_cores: float

    def share(self, contender: str, concurrency: int) -> float:
        """Throughput as a share of the raw aiohttp loop's at the same concurrency."""
        return self.best[contender, concurrency].rate / self.best[LIMIT, concurrency].rate


def run_one(server: Nginx | LatencyServer, contender: str, concurrency: int, tasks: int) -> Figure:
    """One fresh worker process; raises if it fails or reads fewer tasks than asked."""
    url = server.tls_url if contender == "http2" and isinstance(server, Nginx) else server.url
    env = dict(os.environ)
    if isinstance(server, Nginx):
        env["SSL_CERT_FILE"] = server.ca_file  # httpx reads it when a client is built
    before = server.cpu_seconds()
    done = subprocess.run(
        [sys.executable, str(WORKER), contender, url, "bench-key", str(tasks), str(concurrency)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode:
        msg = f"throughput worker {contender} at {concurrency} failed: {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    out = json.loads(done.stdout)
    if out["requests"] + len(out["errors"]) != tasks:
        msg = f"throughput worker {contender}: {out['requests']} of {tasks} tasks read"
        raise RuntimeError(msg)
    cores = (server.cpu_seconds() - before) / out["wall"]
    return Figure(contender, concurrency, out["requests"], out["wall"], out["cpu"], cores, out["how"], out["errors"])


def measure(progress: bool = True) -> Results:
    """Every figure against nginx, then the latency run."""
    best: dict[tuple[str, int], Figure] = {}
    server_cores = 0.0
    with Nginx() as nginx:
        for round_ in range(ROUNDS):
            order = CONTENDERS[round_ % len(CONTENDERS) :] + CONTENDERS[: round_ % len(CONTENDERS)]
            for concurrency in CONCURRENCIES:
                for contender in order:
                    if progress:
                        print(
                            f"throughput round {round_ + 1}/{ROUNDS}: {contender} at {concurrency}...", file=sys.stderr
                        )
                    figure = run_one(nginx, contender, concurrency, TASKS)
                    server_cores = max(server_cores, figure.server_cores)
                    kept = best.get((contender, concurrency))
                    if kept is None or (not figure.errors, figure.rate) > (not kept.errors, kept.rate):
                        best[contender, concurrency] = figure
    latency: dict[str, Figure] = {}
    latency_cores = 0.0
    with LatencyServer() as slow:
        for round_ in range(2):
            for contender in LATENCY_CONTENDERS[::-1] if round_ else LATENCY_CONTENDERS:
                if progress:
                    print(f"latency round {round_ + 1}/2: {contender}...", file=sys.stderr)
                figure = run_one(slow, contender, LATENCY_CONCURRENCY, LATENCY_TASKS)
                latency_cores = max(latency_cores, figure.server_cores)
                kept = latency.get(contender)
                if kept is None or (not figure.errors, figure.rate) > (not kept.errors, kept.rate):
                    latency[contender] = figure
    return Results(best, latency, server_cores, latency_cores)


def latency_bound() -> float:
    """Requests per second a client can reach when every answer takes `LATENCY` seconds."""
    return LATENCY_CONCURRENCY / LATENCY
