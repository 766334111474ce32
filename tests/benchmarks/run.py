"""``make bench``: mountsea's speed and memory benchmarks on 127.0.0.1.

Throughput runs against nginx and a 100 ms latency server (`servers`); per-call, single-call
and memory benchmarks against a `FakeMountsea` child process. Prints a markdown report and
writes it to ``tests/benchmarks/README.md``. Exits 0 when targets are missed (the report says
so) and non-zero when a benchmark crashes. ``--full`` also runs the memory fan-outs that do
not fit the time budget (async, 10,000 tasks). Last, the polling schedule is simulated on a
virtual clock (`simulate`: its own report, ``SCHEDULE.md``); ``--schedule`` runs only that.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import calls
import fanout
import heap
import simulate
import throughput
from fakeserver import ServerProcess
from servers import LATENCY
from throughput import Results

README = Path(__file__).with_name("README.md")
LATENCY_MS = round(LATENCY * 1000)
BUDGET = 175.0  # seconds for the memory fan-outs; optional ones that would overrun it are skipped
SIZES = (1_000, 10_000)
# Sync is required; async 1,000 runs before sync 10,000 so that it fits the budget when it can.
ORDER = (("sync", 1_000), ("async", 1_000), ("sync", 10_000), ("async", 10_000))
PROBE_TASKS = {"sync": 1_000, "async": 500}  # a few seconds of polls each

# Targets.
MIN_THROUGHPUT = 0.85
MAX_ASYNC_CPU = 1.3  # a single async get() over a single sync get(), CPU
MIN_DRIVER_SHARE = 0.5  # the aiohttp driver's throughput over the raw aiohttp loop's, at concurrency 64
SYNC_SHARE = 0.3  # what a sync batch on the fast driver must reach to be worth building (issue 14)
MAX_SERVER_CORES = 0.5  # nginx must not be the bottleneck
MAX_RSS_MB_PER_1000 = 1.0
MAX_HEAP_PER_TASK = 1_000  # bytes: "a few hundred"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    measured: str
    target: str
    result: str  # PASS, FAIL, or a dash for a figure without a target


@dataclass
class FrontResults:
    """The fan-out results of one front end."""

    front: str
    runs: dict[int, fanout.FanoutResult | str] = field(default_factory=dict)  # tasks -> result, or why skipped


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def predicted(tasks: int, capacity: fanout.Capacity) -> float:
    """Seconds a batch should take at ``capacity``, with its probe and process start-up."""
    warmups = 2 * fanout.WARMUP_TASKS  # one before the probe, one before the batch
    return fanout.plan(tasks, capacity).predicted_wall + (PROBE_TASKS[capacity.front] + warmups) / capacity.rate + 3


def too_long(tasks: int, capacity: fanout.Capacity, started: float, reserve: float) -> str | None:
    """Why an optional batch is skipped, if it would push the run (plus ``reserve`` seconds) past `BUDGET`."""
    need = predicted(tasks, capacity)
    if time.monotonic() - started + need + reserve > BUDGET:
        return f"skipped: about {need:.0f} s, over the time budget (`run.py --full`)"
    return None


def run_fanouts(server: ServerProcess, started: float, full: bool) -> list[FrontResults]:
    """Each batch in `ORDER`: probe the capacity, plan, run; the async ones only if time allows."""
    results = {front: FrontResults(front) for front in ("sync", "async")}
    probes: dict[str, fanout.Capacity] = {}
    for i, (front, tasks) in enumerate(ORDER):
        optional = front == "async" and not full
        # Time kept for the sync batches still to come, at the last rate probed.
        sync = probes.get("sync")
        reserve = sum(predicted(size, sync) for f, size in ORDER[i + 1 :] if f == "sync") if sync else 0.0
        why = too_long(tasks, probes[front], started, reserve) if optional and front in probes else None
        if why is None:
            print(f"fan-out {front} {tasks:,} tasks: probing capacity...", file=sys.stderr, flush=True)
            probes[front] = fanout.capacity(server, front, PROBE_TASKS[front])
            why = too_long(tasks, probes[front], started, reserve) if optional else None
        if why is not None:
            results[front].runs[tasks] = why
            continue
        batch = fanout.plan(tasks, probes[front])
        print(f"fan-out {front} {tasks:,} tasks: ~{batch.predicted_wall:.0f} s...", file=sys.stderr, flush=True)
        results[front].runs[tasks] = fanout.run(server, batch)
    return list(results.values())


def speed_rows(single: calls.SingleCallCPU, results: Results) -> list[Row]:
    """The speed targets: one async call's CPU, the aiohttp driver's share of the limit, the server's CPU."""
    share = results.share("aiohttp", 64)
    driver = results.best["aiohttp", 64]
    sync = results.share("sync-aiohttp", 64)
    stand_in = results.best["sync-aiohttp", 64].how.startswith("stand-in")
    return [
        Row(
            "Single call CPU: async `get()` (default driver) / sync `get()`",
            f"{single.ratio('async'):.2f} ({single.us['async']:,.0f} vs {single.us['sync']:,.0f} µs)",
            f"<= {MAX_ASYNC_CPU}",
            verdict(single.ratio("async") <= MAX_ASYNC_CPU),
        ),
        *(
            Row(f"Single call CPU: {SINGLE_NAMES[front]} / sync `get()`", measured, "(reported)", "-")
            for front in ("async-httpx", "async-httpx-no-sniffio", "aiohttp")
            for measured in [f"{single.ratio(front):.2f} ({single.us[front]:,.0f} µs)"]
        ),
        Row(
            "Throughput at concurrency 64: `AsyncMountsea(http_client=DefaultAioHttpClient())` / raw aiohttp loop",
            f"{share:.2f} ({driver.rate:,.0f} vs {results.best[throughput.LIMIT, 64].rate:,.0f} requests/s)",
            f">= {MIN_DRIVER_SHARE}",
            verdict(share >= MIN_DRIVER_SHARE),
        ),
        Row(
            "Throughput at concurrency 64: sync on aiohttp / raw aiohttp loop" + (" (stand-in)" if stand_in else ""),
            f"{sync:.2f} ({results.best['sync-aiohttp', 64].rate:,.0f} requests/s; `Mountsea` today: "
            f"{results.share('sync', 64):.2f})",
            f">= {SYNC_SHARE} (worth building)",
            verdict(sync >= SYNC_SHARE),
        ),
        Row(
            "nginx CPU during any throughput run",
            f"{results.max_server_cores:.2f} cores",
            f"< {MAX_SERVER_CORES}",
            verdict(results.max_server_cores < MAX_SERVER_CORES),
        ),
    ]


def summary_rows(
    throughput_: calls.Throughput,
    imports: calls.ImportTimes,
    per_task: heap.HeapPerTask,
    fronts: list[FrontResults],
    speed: list[Row],
) -> list[Row]:
    """The results table: one row per target, plus the figures reported without one."""
    rows = [
        Row(
            "Per-call: `get()` / bare `httpx.Client.get` throughput",
            f"{throughput_.ratio:.2f} ({throughput_.facade:,.0f} vs {throughput_.bare:,.0f} calls/s)",
            f">= {MIN_THROUGHPUT}",
            verdict(throughput_.ratio >= MIN_THROUGHPUT),
        ),
        *speed,
        Row(
            f"Python heap per tracked task ({per_task.tasks:,} tasks, each seen pending)",
            f"{per_task.pending:,.0f} B ({per_task.scheduled:,.0f} B before its first answer)",
            f"< {MAX_HEAP_PER_TASK:,} B",
            verdict(per_task.pending < MAX_HEAP_PER_TASK),
        ),
    ]
    for front in fronts:
        done: dict[int, fanout.FanoutResult] = {}
        for tasks, run in front.runs.items():
            name = f"Memory fan-out {front.front} {tasks:,}"
            if isinstance(run, str):
                rows.append(Row(name, run, "", "-"))
                continue
            done[tasks] = run
            rows.append(
                Row(
                    f"{name}: peak RSS growth",
                    f"{run.rss_growth_mb:.1f} MB ({run.rss_mb_per_1000:.2f} MB per 1,000 tasks)",
                    "(reported)",
                    "-",
                )
            )
        if done:
            rows.append(rss_row(front.front, done))
            rows.append(threads_row(front.front, done))
            first = max(run.outcome.warmup_rss_kb for run in done.values()) * 1024 / 1e6
            rows.append(
                Row(
                    f"Memory fan-out {front.front}: RSS of a client's first batch ({fanout.WARMUP_TASKS:,} tasks, warm-up)",
                    f"{first:.1f} MB, once per client",
                    "(reported)",
                    "-",
                )
            )
    rows.append(
        Row(
            "Import: `import mountsea` / `import httpx`",
            f"{imports.ratio:.2f} ({imports.mountsea:.0f} vs {imports.httpx:.0f} ms)",
            "(reported)",
            "-",
        )
    )
    return rows


def marginal_rss(runs: dict[int, fanout.FanoutResult]) -> float | None:
    """RSS growth per 1,000 tasks between the two sizes, MB: costs that do not grow with tasks cancel."""
    small, large = (runs.get(size) for size in SIZES)
    if small is None or large is None:
        return None
    return (large.rss_growth_mb - small.rss_growth_mb) / ((large.plan.tasks - small.plan.tasks) / 1000)


def rss_row(front: str, runs: dict[int, fanout.FanoutResult]) -> Row:
    """The memory target: what each further 1,000 tasks add to the peak RSS."""
    name = f"Memory fan-out {front}: peak RSS per 1,000 more tasks ({SIZES[0]:,} -> {SIZES[1]:,})"
    per_1000 = marginal_rss(runs)
    if per_1000 is None:
        return Row(name, "needs both sizes (`run.py --full`)", f"< {MAX_RSS_MB_PER_1000:g} MB", "-")
    return Row(name, f"{per_1000:.2f} MB", f"< {MAX_RSS_MB_PER_1000:g} MB", verdict(per_1000 < MAX_RSS_MB_PER_1000))


def threads_row(front: str, runs: dict[int, fanout.FanoutResult]) -> Row:
    """Threads at peak must not grow with the number of tasks: bounded by the concurrency, equal across sizes."""
    peaks = {tasks: run.outcome.threads_peak for tasks, run in runs.items()}
    before = max(run.outcome.threads_before for run in runs.values())
    bounded = all(peak - before <= fanout.CONCURRENCY + 8 for peak in peaks.values())
    alike = max(peaks.values()) - min(peaks.values()) <= 2
    sizes = " / ".join(f"{tasks:,}" for tasks in peaks)
    return Row(
        f"Memory fan-out {front}: threads at peak ({sizes} tasks)",
        " / ".join(str(peak) for peak in peaks.values()) + f" ({before} before)",
        "independent of tasks",
        verdict(bounded and alike),
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(results: Results) -> str:
    """Every contender at each concurrency against nginx: the best round, and its share of the limit."""
    rows: list[tuple[str, ...]] = []
    for concurrency in throughput.CONCURRENCIES:
        for contender in throughput.CONTENDERS:
            figure = results.best[contender, concurrency]
            rows.append(
                (
                    f"`{contender}`",
                    str(concurrency),
                    f"{figure.rate:,.0f}",
                    f"{figure.cpu_us:,.0f} µs",
                    f"{results.share(contender, concurrency):.2f}",
                    f"{figure.server_cores:.2f}",
                    how(figure),
                )
            )
    header = (
        "contender",
        "concurrency",
        "requests/s",
        "client CPU per request",
        "share of the limit",
        "nginx CPU (cores)",
        "driven by",
    )
    return table(header, rows)


def how(figure: throughput.Figure) -> str:
    """How a figure was driven, and the tasks its batch could not read, if any (in every round kept)."""
    if not figure.errors:
        return figure.how
    first = figure.errors[0].replace("|", "/")
    return f"{figure.how}; **{len(figure.errors)} task(s) not read**, first: {first[:160]}"


def latency_table(results: Results) -> str:
    """The contenders against the 100 ms server: throughput over the latency bound."""
    bound = throughput.latency_bound()
    rows = [
        (
            f"`{contender}`",
            f"{figure.rate:,.0f}",
            f"{figure.rate / bound:.2f}",
            f"{figure.cpu_us:,.0f} µs",
            how(figure),
        )
        for contender, figure in results.latency.items()
    ]
    return table(
        ("contender", "requests/s", f"share of the bound ({bound:,.0f}/s)", "client CPU per request", "driven by"), rows
    )


def details(fronts: list[FrontResults]) -> str:
    """The memory fan-out runs: their schedule and what the client used."""
    run_rows: list[tuple[str, ...]] = []
    for front in fronts:
        for run in front.runs.values():
            if isinstance(run, str):
                continue
            run_rows.append(
                (
                    front.front,
                    f"{run.plan.tasks:,}",
                    f"{run.plan.interval:g} s",
                    f"{run.outcome.wall:.1f} s",
                    f"{run.requests:,}",
                    f"{run.rss_growth_mb:.1f} MB",
                    f"{run.outcome.threads_before} -> {run.outcome.threads_peak}",
                )
            )
    return table(
        ("front end", "tasks", "poll interval", "wall", "requests", "peak RSS growth", "threads"),
        run_rows,
    )


def report(
    rows: list[Row],
    per_call: calls.Throughput,
    single: calls.SingleCallCPU,
    speed: Results,
    imports: calls.ImportTimes,
    per_task: heap.HeapPerTask,
    fronts: list[FrontResults],
    took: float,
    load: tuple[float, float],
    schedule: simulate.Measurements,
    *,
    full: bool,
) -> str:
    """The README: how to run, the machine, the results and what each benchmark measures."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = table(
        ("Benchmark", "Measured", "Target", "Result"), [(r.benchmark, r.measured, r.target, r.result) for r in rows]
    )
    versions = ", ".join(f"{name} {version(name)}" for name in ("httpx", "httpcore", "aiohttp", "h2", "sniffio"))
    return f"""# Benchmarks

`make bench` runs `tests/benchmarks/run.py` (seven to nine minutes), prints this report and
rewrites this file, and [SCHEDULE.md](SCHEDULE.md) with its picture (`make bench ARGS=--schedule`: those alone). It installs Debian's `nginx-light` first when `nginx` is missing (as root).
Every server listens on 127.0.0.1 in a process of its own, and every client figure comes from a
fresh process, so that the client's CPU, memory and GIL are its own. `make test` does not collect
these files. `run.py` exits 0 when a target is missed, non-zero when a benchmark crashes;
`run.py --full` also runs the memory fan-outs that would overrun their time budget.
Ratios are the targets, not absolute figures: these machines are shared.

## Last run

{now}; {platform.platform()}; {os.cpu_count()} CPUs; Python {platform.python_version()};
{versions}; load average {load[0]:.1f} before, {load[1]:.1f} after;
{took:.0f} s in all{" (`run.py --full`)" if full else ""}.

{results}

## Throughput against nginx

{throughput_table(speed)}

{throughput.TASKS:,} producer tasks, each completed on its first poll, read by one client at
the concurrency given, after a warm-up over twice as many others; {throughput.ROUNDS} rounds, the
contenders interleaved (the order turns each round), the round with the highest throughput
kept. *Share of the limit*: requests/s over those of the raw aiohttp loop at the same
concurrency. *nginx CPU*: the server process's CPU time over the worker's whole life (warm-up
included) per second measured; the highest of any run was {speed.max_server_cores:.2f} cores, so
the server is not the bottleneck. Rows:

- `sync`: `Mountsea.as_completed` (a thread per request in flight, httpx).
- `sync-aiohttp`: `Mountsea(http_client=DefaultAioHttpClient())` once the sync client takes
  that driver; until then a stand-in (said in *driven by*): as many coroutines as the
  concurrency on an event-loop thread, each calling `DefaultAioHttpClient.send` and
  `read_answer` (no scheduler), each Task handed to the calling thread through a queue.
- `async`: `AsyncMountsea.as_completed`, its default driver: httpcore's HTTP/1.1 connections on
  asyncio streams, on the loop, without httpx's client layer.
- `async-httpx`: `AsyncMountsea(http_client=httpx.AsyncClient())`, every request on the loop.
- `aiohttp`: `AsyncMountsea(http_client=DefaultAioHttpClient()).as_completed`.
- `http2`: `AsyncMountsea(http2=True).as_completed` over TLS, nginx offering h2 by ALPN (the CA
  trusted through `SSL_CERT_FILE`): one TLS connection carries every request.
- `bare-httpx`: coroutines on one `httpx.AsyncClient`, the body read but not parsed.
- `raw-aiohttp`: the same on one `aiohttp.ClientSession`: the physical limit for Python here.

## Against a server that answers after {LATENCY_MS} ms

{latency_table(speed)}

{throughput.LATENCY_TASKS:,} tasks at concurrency {throughput.LATENCY_CONCURRENCY} against a small asyncio server
(`servers.LatencyServer`) that waits {LATENCY_MS} ms before each answer, as an API far away would;
the best of two interleaved rounds. No client can beat the bound, concurrency / latency; the
client CPU per request is what those requests cost an event loop or the threads. The latency
server used at most {speed.max_latency_server_cores:.2f} cores.

## Single call CPU

Sequential `client.producer.tasks.get()` calls on a task whose status never changes, against
FakeMountsea: `time.process_time` (every thread of the process) over blocks of {calls.SINGLE_CALLS} calls ({calls.SINGLE_BLOCKS} blocks per
process, {single.workers} fresh processes per row, interleaved; the cheapest block counts).
Each async row is `AsyncMountsea(...).producer.tasks.get()` on the driver named. *Without
sniffio* runs it with `import sniffio` failing as it does when the package is missing (after a
search of `sys.path`): httpcore then retries that import in several places on every async
request.
{single_table(single)}

## What else is measured

- **Per-call overhead**: sync `client.producer.tasks.get()` against a bare `httpx.Client.get` of the
  same URL, headers and connection settings, body not parsed; the task's status never changes.
  {per_call.rounds} interleaved rounds of {per_call.calls_per_round:,} calls each; the median per-round ratio (and
  each side's median rate).
- **Memory fan-out**: `as_completed` over 1,000 and 10,000 tasks, `max_concurrency={fanout.CONCURRENCY}`,
  `PollPolicy.fixed(interval)`, in a fresh worker process against FakeMountsea. Each task goes
  pending, processing, completed. The interval is sized from a short probe of the client's rate
  so that rounds of polls do not overlap; these runs measure memory and threads, not speed
  (the throughput tables do). RSS: VmHWM after the run minus VmRSS before it. Before it, the
  client is built and has run one warm-up batch over {fanout.WARMUP_TASKS:,} completed tasks at the same
  concurrency, which opens its threads and connections and imports what a first request needs:
  the client's one-off cost (reported as *first batch*). The memory target is on what each
  further 1,000 tasks add: the growth of the 10,000-task run minus that of the 1,000-task run,
  per 1,000 tasks, so that what does not grow with tasks cancels out. Threads:
  `threading.active_count()` before the run and at its peak.
- **Heap per tracked task**: `tracemalloc` in a fresh process, over the fan-out scheduler alone:
  {per_task.tasks:,} tasks scheduled, each answered once with a `pending` Task parsed from the JSON
  FakeMountsea sends: the state kept for an unfinished task between two polls (its polling state,
  its heap entry and its last Task).
- **Import time**: cumulative `-X importtime` of `import mountsea` and of `import httpx` in fresh
  interpreters with warm bytecode caches, median of {imports.runs} interleaved runs. `asyncio` is
  loaded with `AsyncMountsea`, on first use ({imports.asyncio_in_mountsea:.0f} ms of it in `import mountsea`).

## Memory fan-out details

{details(fronts)}

## Polling schedule

The *Schedule* and *Rate limit* rows come from a simulation on a virtual clock that drives the
scheduling core ({schedule.seconds:.0f} s): requests per task against detection latency for each poll
policy, the optimum for reference, and a server's hidden or advertised rate limit. The tables,
the picture and how they are measured are in [SCHEDULE.md](SCHEDULE.md).
"""


SINGLE_NAMES = {
    "sync": "sync `get()`",
    "async": "async `get()`, default driver (httpcore connections on the loop)",
    "async-httpx": "async `get()`, `httpx.AsyncClient`",
    "async-httpx-no-sniffio": "async `get()`, `httpx.AsyncClient` without sniffio",
    "aiohttp": "async `get()`, `DefaultAioHttpClient`",
}


def single_table(single: calls.SingleCallCPU) -> str:
    """CPU per call of each front end, and its ratio to the sync client's."""
    rows = [(SINGLE_NAMES[front], f"{us:,.0f} µs", f"{single.ratio(front):.2f}") for front, us in single.us.items()]
    return table(("call", "client CPU per call", "/ sync"), rows)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print the report and write it to the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="also run the memory fan-outs over the time budget")
    parser.add_argument("--schedule", action="store_true", help="only the polling-schedule simulation (SCHEDULE.md)")
    args = parser.parse_args(argv)
    if args.schedule:
        return simulate.main([])
    # Loopback only: no proxy from the environment may carry a request elsewhere.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    print("import time...", file=sys.stderr, flush=True)
    imports = calls.import_times()
    print("heap per tracked task...", file=sys.stderr, flush=True)
    per_task = heap.heap_per_task()
    speed = throughput.measure()
    with ServerProcess() as server:
        print("per-call overhead...", file=sys.stderr, flush=True)
        per_call = calls.per_call_overhead(server)
        print("single call CPU...", file=sys.stderr, flush=True)
        single = calls.single_call_cpu(server)
        fronts = run_fanouts(server, time.monotonic(), args.full)
    schedule_load = os.getloadavg()[0]
    schedule = simulate.measure(log=lambda line: print(line, file=sys.stderr, flush=True))
    simulate.write(schedule, (schedule_load, os.getloadavg()[0]))
    rows = summary_rows(per_call, imports, per_task, fronts, speed_rows(single, speed))
    rows += [Row(*row) for row in simulate.rows(schedule)]
    load = (load_before, os.getloadavg()[0])
    took = time.monotonic() - started
    text = report(rows, per_call, single, speed, imports, per_task, fronts, took, load, schedule, full=args.full)
    print(text)
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
