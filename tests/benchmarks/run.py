"""``make bench``: mountsea's speed and memory benchmarks against a loopback `FakeMountsea`.

Prints a markdown report and writes it to ``tests/benchmarks/README.md``. Exits 0 when
targets are missed (the report says so) and non-zero when a benchmark crashes.
``--full`` also runs the fan-outs that do not fit the time budget (async, 10,000 tasks).
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
from fakeserver import ServerProcess

README = Path(__file__).with_name("README.md")
BUDGET = 175.0  # seconds for the whole run; optional fan-outs that would overrun it are skipped
SIZES = (1_000, 10_000)
# Sync is required; async 1,000 runs before sync 10,000 so that it fits the budget when it can.
ORDER = (("sync", 1_000), ("async", 1_000), ("sync", 10_000), ("async", 10_000))
PROBE_TASKS = {"sync": 1_000, "async": 500}  # a few seconds of polls each

# Targets.
MIN_THROUGHPUT = 0.85
MAX_WALL = 1.2
MAX_REQUESTS = 1.1
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


def summary_rows(
    throughput: calls.Throughput, imports: calls.ImportTimes, per_task: heap.HeapPerTask, fronts: list[FrontResults]
) -> list[Row]:
    """The results table: one row per target, plus the figures reported without one."""
    rows = [
        Row(
            "Per-call: `get()` / bare `httpx.Client.get` throughput",
            f"{throughput.ratio:.2f} ({throughput.facade:,.0f} vs {throughput.bare:,.0f} calls/s)",
            f">= {MIN_THROUGHPUT}",
            verdict(throughput.ratio >= MIN_THROUGHPUT),
        ),
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
            name = f"Fan-out {front.front} {tasks:,}"
            if isinstance(run, str):
                rows.append(Row(name, run, "", "-"))
                continue
            done[tasks] = run
            rows += [
                Row(
                    f"{name}: wall / ideal",
                    f"{run.wall_ratio:.2f} ({run.outcome.wall:.1f} s vs {run.ideal:.1f} s)",
                    f"<= {MAX_WALL}",
                    verdict(run.wall_ratio <= MAX_WALL),
                ),
                Row(
                    f"{name}: requests / minimum",
                    f"{run.request_ratio:.2f} ({run.requests:,} vs {run.minimum:,})",
                    f"<= {MAX_REQUESTS}",
                    verdict(run.request_ratio <= MAX_REQUESTS),
                ),
                Row(
                    f"{name}: peak RSS growth",
                    f"{run.rss_growth_mb:.1f} MB ({run.rss_mb_per_1000:.2f} MB per 1,000 tasks)",
                    "(reported)",
                    "-",
                ),
            ]
        if done:
            rows.append(rss_row(front.front, done))
            rows.append(threads_row(front.front, done))
            first = max(run.outcome.warmup_rss_kb for run in done.values()) * 1024 / 1e6
            rows.append(
                Row(
                    f"Fan-out {front.front}: RSS of a client's first batch ({fanout.WARMUP_TASKS:,} tasks, warm-up)",
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
    name = f"Fan-out {front}: peak RSS per 1,000 more tasks ({SIZES[0]:,} -> {SIZES[1]:,})"
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
        f"Fan-out {front}: threads at peak ({sizes} tasks)",
        " / ".join(str(peak) for peak in peaks.values()) + f" ({before} before)",
        "independent of tasks",
        verdict(bounded and alike),
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def details(fronts: list[FrontResults]) -> str:
    """The fan-out runs in full: capacity, schedule, and what the client used."""
    run_rows: list[tuple[str, ...]] = []
    for front in fronts:
        for run in front.runs.values():
            if isinstance(run, str):
                continue
            probe = run.plan.capacity
            run_rows.append(
                (
                    front.front,
                    f"{run.plan.tasks:,}",
                    f"{probe.rate:,.0f}/s ({probe.client_cpu:.2f}, {probe.server_cpu:.2f})",
                    f"{run.plan.interval:g} s",
                    f"{run.plan.finishes[0]:.1f}-{run.plan.finishes[-1]:.1f} s",
                    f"{run.first_round:.1f} s",
                    f"{run.outcome.wall:.1f} s / {run.ideal:.1f} s",
                    f"{run.requests:,} / {run.minimum:,}",
                    f"{run.rss_growth_mb:.1f} MB",
                    f"{run.outcome.threads_before} -> {run.outcome.threads_peak}",
                    f"{run.cpu_ms_per_request:.2f} ms",
                )
            )
    return table(
        (
            "front end",
            "tasks",
            "probed rate (client, server CPU cores)",
            "poll interval",
            "tasks finish at",
            "first round",
            "wall / ideal",
            "requests / minimum",
            "peak RSS growth",
            "threads",
            "client CPU per request",
        ),
        run_rows,
    )


def report(
    rows: list[Row],
    throughput: calls.Throughput,
    imports: calls.ImportTimes,
    per_task: heap.HeapPerTask,
    fronts: list[FrontResults],
    took: float,
    load: tuple[float, float],
    *,
    full: bool,
) -> str:
    """The README: how to run, the machine, the results and what each benchmark measures."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = table(
        ("Benchmark", "Measured", "Target", "Result"), [(r.benchmark, r.measured, r.target, r.result) for r in rows]
    )
    return f"""# Benchmarks

`make bench` runs `tests/benchmarks/run.py` (two to three minutes), prints this report and rewrites
this file. Everything talks to `mountsea.testing.FakeMountsea` on 127.0.0.1, run in a child process
so that the client's CPU, memory and GIL are its own. `make test` does not collect these files.
`run.py` exits 0 when a target is missed, non-zero when a benchmark crashes; `run.py --full` also
runs the fan-outs that would overrun the time budget.

## Last run

{now}; {platform.platform()}; {os.cpu_count()} CPUs; Python {platform.python_version()};
httpx {version("httpx")}, httpcore {version("httpcore")}; load average {load[0]:.1f} before, {load[1]:.1f} after;
{took:.0f} s in all{" (`run.py --full`)" if full else ""}.

{results}

## What is measured

- **Per-call overhead**: sync `client.producer.tasks.get()` against a bare `httpx.Client.get` of the
  same URL, headers and connection settings, body not parsed; the task's status never changes.
  {throughput.rounds} interleaved rounds of {throughput.calls_per_round:,} calls each; the median per-round ratio (and
  each side's median rate).
- **Fan-out**: `as_completed` over 1,000 and 10,000 tasks, `max_concurrency={fanout.CONCURRENCY}`,
  `PollPolicy.fixed(interval)`, in a fresh worker process. Each task goes pending, processing,
  completed and finishes at its own time, spread over the first interval. *Ideal* wall: the last
  finish plus one interval. *Minimum* requests: per task, `ceil(finish / interval) + 1` (polls at
  t=0, then every interval). RSS: VmHWM after the run minus VmRSS before it. Before it, the
  client is built and has run one warm-up batch over {fanout.WARMUP_TASKS:,} completed tasks at the same
  concurrency, which opens its threads and connections and imports what a first request needs:
  the client's one-off cost (reported as *first batch*). The memory target is on what each
  further 1,000 tasks add: the growth of the 10,000-task run minus that of the 1,000-task run,
  per 1,000 tasks, so that what does not grow with tasks (the working set of
  {fanout.CONCURRENCY} requests in flight, the allocator's arenas) cancels out. Threads:
  `threading.active_count()` before the run and at its peak.
- **Heap per tracked task**: `tracemalloc` in a fresh process, over the fan-out scheduler alone:
  {per_task.tasks:,} tasks scheduled, each answered once with a `pending` Task parsed from the JSON
  FakeMountsea sends: the state kept for an unfinished task between two polls (its polling state,
  its heap entry and its last Task).
- **Import time**: cumulative `-X importtime` of `import mountsea` and of `import httpx` in fresh
  interpreters with warm bytecode caches, median of {imports.runs} interleaved runs. `asyncio` is
  loaded with `AsyncMountsea`, on first use ({imports.asyncio_in_mountsea:.0f} ms of it in `import mountsea`).

## Fan-out details

{details(fronts)}

Before each run the front end polls {PROBE_TASKS["sync"]:,} (async: {PROBE_TASKS["async"]:,}) already-completed tasks as fast as it
can: the probed rate, with the CPU cores the client and the server used meanwhile. The poll interval
is {fanout.HEADROOM:g}x the time one round of polls over every task takes at that rate, so that rounds do not
overlap; *first round* is how long that round really took. The server is not the bottleneck, the
client is: httpcore's pool does work in proportion to its open connections on every request, so at
{fanout.CONCURRENCY} connections a request costs milliseconds of client CPU. A finished task costs nothing:
`as_completed` forgets each task once yielded.
"""


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print the report and write it to the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="also run the fan-outs over the time budget")
    args = parser.parse_args(argv)
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
    with ServerProcess() as server:
        print("per-call overhead...", file=sys.stderr, flush=True)
        throughput = calls.per_call_overhead(server)
        fronts = run_fanouts(server, started, args.full)
    rows = summary_rows(throughput, imports, per_task, fronts)
    load = (load_before, os.getloadavg()[0])
    text = report(rows, throughput, imports, per_task, fronts, time.monotonic() - started, load, full=args.full)
    print(text)
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
