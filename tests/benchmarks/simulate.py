"""The real scheduling core on a virtual clock: requests per task versus detection latency, and pacing.

Drives `mountsea._scheduler.Scheduler` as a driver would (plan, send, record), against a
simulated server whose tasks finish after durations drawn from a distribution. Answers carry
``createdAt``, ``finishedAt`` and a ``Date`` header (whole seconds, as HTTP dates are); they
come back at once, or after a round trip in the rate-limit rows. Every figure is the mean over
`SEEDS` seeds, each seed one workload that every policy compared meets (the same tasks).

The reference is the optimum: for the true distribution, known exactly, the schedule of polls
with the fewest requests per task at a given mean detection latency (`Frontier`, by dynamic
programming). ``python tests/benchmarks/simulate.py`` prints the report and writes
``SCHEDULE.md`` and ``schedule.svg`` beside this file; ``make bench`` (`run.py`) runs it too.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import email.utils
import heapq
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import attrs

from mountsea import APIError, PollPolicy, RateLimitError, Task, TaskRef
from mountsea._pacing import Pacer
from mountsea._scheduler import Call, ClientState, Scheduler, Tracked

REPORT = Path(__file__).with_name("SCHEDULE.md")
PICTURE = Path(__file__).with_name("schedule.svg")
EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
START = 1000.0  # the virtual monotonic clock at the start; the server's Unix time is EPOCH + clock
SEEDS = 5
TASKS = 1000
PRIOR = 50  # finished tasks the client has read before: the durations it starts from
SEEN = 10.0  # tasks are first seen at ages 0-10 s
SHORT = 15.0  # tasks shorter than this are the mixture's short ones
LIMIT = 20.0  # the server's rate limit, requests/s (burst as many)
RATE_TASKS = 1000  # enough for the demand to exceed the limit from the start for about two minutes
RATE_SEEDS = 3  # the rate-limit runs cost most (ranking every due task for each token) and vary least
RATE_RTT = 0.05  # seconds from sending a request to its answer, in the rate-limit rows
RATE_CONCURRENCY = 16  # as_completed's default max_concurrency
WARMUP = 10.0  # seconds not counted in the 429 share: the client has not met the limit yet

# Targets (issue 15).
MAX_REQUESTS = 0.75  # adaptive / fixed requests per task
MAX_LATENCY = 1.1  # adaptive / fixed mean detection latency
MAX_THROTTLED = 0.05  # 429s over requests after WARMUP, against a hidden limit
MIN_THROUGHPUT = 0.9  # accepted requests/s over the limit while the demand exceeds it


# -- the workloads --------------------------------------------------------------------------


class Distribution(Protocol):
    """Task durations: drawn, and known exactly (for the optimum)."""

    def sample(self, rng: random.Random) -> float: ...
    def cdf(self, x: float) -> float: ...
    def partial(self, x: float) -> float: ...  # E[T; T <= x]
    def upper(self) -> float: ...  # a duration exceeded with probability < 1e-6


@attrs.frozen
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def cdf(self, x: float) -> float:
        return min(1.0, max(0.0, (x - self.low) / (self.high - self.low)))

    def partial(self, x: float) -> float:
        x = min(x, self.high)
        return 0.0 if x <= self.low else (x * x - self.low**2) / (2 * (self.high - self.low))

    def upper(self) -> float:
        return self.high


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


@attrs.frozen
class LogNormal:
    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= 0 else _phi(math.log(x / self.median) / self.sigma)

    def partial(self, x: float) -> float:
        if x <= 0:
            return 0.0
        mean = self.median * math.exp(self.sigma**2 / 2)
        return mean * _phi((math.log(x / self.median) - self.sigma**2) / self.sigma)

    def upper(self) -> float:
        return self.median * math.exp(4.9 * self.sigma)  # z = 4.9: P(above) = 5e-7


@attrs.frozen
class Mixture:
    parts: tuple[tuple[float, Uniform], ...]  # (weight, distribution), weights summing to 1

    def sample(self, rng: random.Random) -> float:
        pick, total = rng.random(), 0.0
        for weight, part in self.parts:
            total += weight
            if pick < total:
                return part.sample(rng)
        return self.parts[-1][1].sample(rng)

    def cdf(self, x: float) -> float:
        return sum(weight * part.cdf(x) for weight, part in self.parts)

    def partial(self, x: float) -> float:
        return sum(weight * part.partial(x) for weight, part in self.parts)

    def upper(self) -> float:
        return max(part.upper() for _, part in self.parts)


WORKLOADS: dict[str, Distribution] = {
    "uniform 30-120 s": Uniform(30, 120),  # the docs: music takes 30-120 s
    "log-normal, median 60 s": LogNormal(60, 0.5),  # a long tail: 5 % take over 2.3 minutes
    "mixture: 30 % 2-10 s, 70 % 30-120 s": Mixture(((0.3, Uniform(2, 10)), (0.7, Uniform(30, 120)))),
}
UNIFORM, LOGNORMAL, MIXTURE = WORKLOADS

POLICIES: dict[str, PollPolicy] = {
    "fixed(3)": PollPolicy.fixed(3),
    "fixed(5)": PollPolicy.fixed(5),
    "fixed(10)": PollPolicy.fixed(10),
    "PollPolicy()": PollPolicy(),  # the curve of before: 1.5, 2.25, 3.4, then 5 s, jittered; no latency
    "adaptive(1.5)": PollPolicy.adaptive(1.5),
    "adaptive(2.5)": PollPolicy.adaptive(2.5),
    "adaptive(5)": PollPolicy.adaptive(5),
}
COMPARISONS = (  # (workload, adaptive, fixed)
    (UNIFORM, "adaptive(2.5)", "fixed(5)"),
    (UNIFORM, "adaptive(1.5)", "fixed(3)"),
    (LOGNORMAL, "adaptive(2.5)", "fixed(5)"),
    (MIXTURE, "adaptive(2.5)", "fixed(5)"),
)


# -- the server -----------------------------------------------------------------------------


@attrs.define
class Bucket:
    """A token bucket: ``rate`` per second, ``burst`` deep, full at first.

    Advertised as the IETF draft's fields: ``r`` the whole tokens left, ``t`` the whole
    seconds until the bucket is full again (the quota's reset)."""

    rate: float
    burst: float
    tokens: float = attrs.field(default=attrs.Factory(lambda self: self.burst, takes_self=True))
    at: float = START

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def headers(self, now: float) -> dict[str, str]:
        reset = math.ceil((self.burst - self.tokens) / self.rate - 1e-9)
        return {
            "ratelimit-policy": f'"default";q={self.burst:g};w={self.burst / self.rate:g}',
            "ratelimit": f'"default";r={math.floor(self.tokens)};t={max(reset, 0)}',
        }


@attrs.define
class Window:
    """A quota of ``quota`` requests per fixed window of ``seconds``; advertised as ``r`` left, ``t`` to its end."""

    quota: int
    seconds: float = 1.0
    index: int = -1
    used: int = 0

    def allow(self, now: float) -> bool:
        index = math.floor(now / self.seconds)
        if index != self.index:
            self.index, self.used = index, 0
        if self.used < self.quota:
            self.used += 1
            return True
        return False

    def headers(self, now: float) -> dict[str, str]:
        end = (self.index + 1) * self.seconds
        return {
            "ratelimit-policy": f'"default";q={self.quota};w={self.seconds:g}',
            "ratelimit": f'"default";r={self.quota - self.used};t={math.ceil(end - now - 1e-9)}',
        }


Limit = Bucket | Window


@attrs.define
class Server:
    """The API: each task finishes ``duration`` after its creation; an optional rate limit, told or not."""

    created: dict[str, float]  # task id -> creation, on the virtual clock
    duration: dict[str, float]
    limit: Limit | None = None
    advertise: bool = False
    _dates: dict[int, str] = attrs.Factory(dict)

    def answer(self, ref: TaskRef, now: float) -> tuple[Task | APIError, dict[str, str]]:
        second = math.floor(EPOCH.timestamp() + now)
        if (date := self._dates.get(second)) is None:
            date = self._dates[second] = email.utils.formatdate(second, usegmt=True)
        headers = {"date": date}
        allowed = self.limit is None or self.limit.allow(now)
        if self.limit is not None and self.advertise:
            headers.update(self.limit.headers(now))
        if not allowed:
            error = RateLimitError("HTTP 429", status_code=429, service=ref.service, task_id=ref.id)
            return error, headers
        finish = self.created[ref.id] + self.duration[ref.id]
        done = now >= finish
        task = Task(
            id=ref.id,
            service=ref.service,
            status="completed" if done else "processing",
            created_at=EPOCH + datetime.timedelta(seconds=self.created[ref.id]),
            finished_at=EPOCH + datetime.timedelta(seconds=finish) if done else None,
        )
        return task, headers


# -- one run --------------------------------------------------------------------------------


@attrs.frozen
class Result:
    """One run: a batch of tasks read with `as_completed`'s scheduler until every one is done."""

    requests: float  # per task
    latency: float  # mean detection latency, s: seen done minus finished (or first seen, if later)
    short_latency: float | None  # the same over tasks shorter than SHORT
    sent: int = 0
    throttled: int = 0  # 429s
    sent_late: int = 0  # requests after WARMUP
    throttled_late: int = 0  # ... and the 429s among them
    window: float = 0.0  # seconds from WARMUP to the end of the last backlog
    accepted_window: int = 0  # requests the server accepted in that window
    backlog: float = 0.0  # share of the window in which requests were due but held back
    cpu: float = 0.0  # process seconds of the run (the simulated server included)

    @property
    def throughput(self) -> float:
        """Accepted requests/s in the window, over the limit."""
        return self.accepted_window / self.window / LIMIT if self.window > 0 else 0.0


def run(
    policy: PollPolicy,
    workload: Distribution,
    *,
    seed: int,
    tasks: int = TASKS,
    limit: Limit | None = None,
    advertise: bool = False,
    max_rate: float | None = None,
    rtt: float = 0.0,
    concurrency: int = 10_000,
) -> Result:
    """Read ``tasks`` tasks to completion on the virtual clock; the same ``seed`` draws the same tasks."""
    cpu = time.process_time()
    rng = random.Random(seed)
    state = ClientState(rng=random.Random(seed + 1), pacer=Pacer(max_rate))
    for _ in range(PRIOR):
        state.durations["producer"].add(workload.sample(rng), state.rng)
    created: dict[str, float] = {}
    duration: dict[str, float] = {}
    for i in range(tasks):
        created[f"t{i}"] = START - rng.uniform(0, SEEN)
        duration[f"t{i}"] = workload.sample(rng)
    server = Server(created, duration, limit, advertise)
    call = Call(until_done=True, single=False, deadline=None, policy=policy, max_retries=2)
    refs = [TaskRef("producer", task_id) for task_id in created]
    scheduler = Scheduler(refs, call=call, state=state, now=START, max_concurrency=concurrency)
    answers: list[tuple[float, int, Tracked, Task | APIError, dict[str, str]]] = []  # in flight, by arrival
    detected: dict[str, float] = {}
    sent = throttled = sent_late = throttled_late = 0
    accepted_at: list[float] = []  # send times of accepted requests after WARMUP
    held: list[tuple[float, float]] = []  # intervals (from, to) with requests due but held back
    now, held_since = START, None
    while not (plan := scheduler.plan(now)).done:
        for task in plan.ready:
            detected[task.id] = now
        for tracked, _ in plan.send:
            outcome, headers = server.answer(tracked.ref, now)
            late = now - START >= WARMUP
            limited = isinstance(outcome, RateLimitError)
            sent, sent_late = sent + 1, sent_late + late
            throttled, throttled_late = throttled + limited, throttled_late + (late and limited)
            if late and not limited:
                accepted_at.append(now)
            heapq.heappush(answers, (now + rtt, sent, tracked, outcome, headers))
        if limit is not None:  # the demand exceeds what is sent: a due task waits (for a token, or a pause)
            waiting = bool(scheduler._heap and scheduler._heap[0][0] <= now)
            waiting = waiting or scheduler._paused.get("producer", 0.0) > now
            if waiting and held_since is None:
                held_since = now
            elif not waiting and held_since is not None:
                held.append((held_since, now))
                held_since = None
        wake = math.inf if plan.wait is None else now + plan.wait
        if answers and answers[0][0] <= wake:
            now = max(now, answers[0][0])
            while answers and answers[0][0] <= now:
                _, _, tracked, outcome, headers = heapq.heappop(answers)
                scheduler.record(tracked, outcome, now, headers)
        elif wake < math.inf:
            now = wake
        else:
            msg = "the scheduler waits for an answer that is not coming"
            raise RuntimeError(msg)
    if held_since is not None:
        held.append((held_since, now))
    finish = {t: created[t] + duration[t] for t in created}
    latencies = [detected[t] - max(finish[t], START) for t in created]
    short = [detected[t] - max(finish[t], START) for t in created if duration[t] < SHORT]
    begin = START + WARMUP
    end = max((until for _, until in held), default=begin)
    window = max(0.0, end - begin)
    backlog = sum(max(0.0, min(until, end) - max(since, begin)) for since, until in held)
    return Result(
        requests=sent / tasks,
        latency=statistics.fmean(latencies),
        short_latency=statistics.fmean(short) if short else None,
        sent=sent,
        throttled=throttled,
        sent_late=sent_late,
        throttled_late=throttled_late,
        window=window,
        accepted_window=sum(begin <= at < end for at in accepted_at),
        backlog=backlog / window if window else 0.0,
        cpu=time.process_time() - cpu,
    )


# -- the optimum ----------------------------------------------------------------------------


@attrs.frozen
class Frontier:
    """The fewest requests per task any schedule needs for a mean detection latency, for one distribution.

    Each point is the optimum of ``requests + mu * latency`` over every schedule of polls on a
    grid of ages (0.1 s, coarser past 100 s), the distribution known exactly and each task's age
    known from its first poll (made at an age uniform in 0-`SEEN` s): a dynamic programme,
    backwards over the age of the last poll. Between points, the line joining them (the mix of
    the two schedules) is also reachable, so `requests` interpolates linearly.
    """

    points: tuple[tuple[float, float], ...]  # (latency, requests), by latency

    @classmethod
    def of(cls, workload: Distribution, mus: Sequence[float] = ()) -> Frontier:
        mus = mus or [0.25 * 1.25**i for i in range(26)]  # mean latencies from about 0.5 s to 9 s
        grid = [0.0]
        while grid[-1] < workload.upper():
            grid.append(grid[-1] + max(0.1, grid[-1] / 1000))
        cdf = [workload.cdf(g) for g in grid]
        partial = [workload.partial(g) for g in grid]
        seen = range(bisect.bisect_left(grid, 0.0), bisect.bisect_right(grid, SEEN))
        points = []
        for mu in mus:
            polls, late = _optimise(grid, cdf, partial, mu)
            points.append((statistics.fmean(late[i] for i in seen), 1 + statistics.fmean(polls[i] for i in seen)))
        return cls(tuple(sorted(set(points))))

    def requests(self, latency: float) -> float:
        """The optimum's requests per task at ``latency`` (clamped to the range computed)."""
        xs = [x for x, _ in self.points]
        i = min(max(bisect.bisect_left(xs, latency), 1), len(xs) - 1)
        (x0, y0), (x1, y1) = self.points[i - 1], self.points[i]
        share = min(max((latency - x0) / (x1 - x0), 0.0), 1.0) if x1 > x0 else 0.0
        return y0 + (y1 - y0) * share

    def latency(self, requests: float) -> float:
        """The lowest mean latency at which the optimum needs at most ``requests`` per task (clamped likewise)."""
        i = next((i for i, (_, y) in enumerate(self.points) if y <= requests), len(self.points) - 1)
        (x0, y0), (x1, y1) = self.points[max(i - 1, 0)], self.points[i]
        return x1 if y0 == y1 else x0 + (x1 - x0) * min(max((y0 - requests) / (y0 - y1), 0.0), 1.0)


def _optimise(grid: list[float], cdf: list[float], partial: list[float], mu: float) -> tuple[list[float], list[float]]:
    """For each age ``grid[j]`` of a poll that found the task running, the expected further polls and
    latency (both unconditional: times P(T > age)) of the schedule minimising ``polls + mu * latency``.

    After a poll at ``g_j`` the next at ``g_k`` is made if T > g_j (probability ``1 - F_j``) and
    sees the tasks done in between ``g_k - T`` late: ``g_k (F_k - F_j) - (M_k - M_j)`` with ``M`` the
    partial mean. The cost is Monge (its cross term is ``-mu g_k F_j``), so the best ``k`` does not
    decrease with ``j``: the scan for ``j`` stops at the best ``k`` of ``j + 1``.
    """
    n = len(grid)
    cost, polls, late, best_next = [0.0] * n, [0.0] * n, [0.0] * n, [n - 1] * n
    for j in range(n - 2, -1, -1):
        f_j, m_j = cdf[j], partial[j]
        best, arg, wait = math.inf, n - 1, 0.0
        for k in range(j + 1, best_next[j + 1] + 1 if j + 1 < n - 1 else n):
            missed = grid[k] * (cdf[k] - f_j) - (partial[k] - m_j)
            if (value := mu * missed + cost[k]) <= best:
                best, arg, wait = value, k, missed
        alive = 1.0 - f_j
        cost[j], polls[j], late[j], best_next[j] = alive + best, alive + polls[arg], wait + late[arg], arg
    return polls, late


# -- the measurements -----------------------------------------------------------------------


@attrs.frozen
class Spread:
    """The mean, min and max over seeds."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def text(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} ({min(self.values):.{digits}f}-{max(self.values):.{digits}f})"


@attrs.frozen
class RateRow:
    """A rate-limit scenario and its runs (one per seed)."""

    name: str
    max_rate: float | None
    advertise: str  # "" (hidden), "bucket" or "window"
    runs: tuple[Result, ...]


@attrs.frozen
class Measurements:
    runs: dict[tuple[str, str], tuple[Result, ...]]  # (workload, policy) -> one per seed
    frontiers: dict[str, Frontier]
    rates: tuple[RateRow, ...]
    seconds: float

    def spread(self, workload: str, policy: str, field: Callable[[Result], float | None]) -> Spread:
        return Spread(tuple(v for r in self.runs[workload, policy] if (v := field(r)) is not None))

    def ratio(self, workload: str, a: str, b: str, field: Callable[[Result], float | None]) -> Spread:
        """``a``'s figure over ``b``'s, seed by seed (the same tasks)."""
        pairs = zip(self.runs[workload, a], self.runs[workload, b], strict=True)
        return Spread(tuple(x / y for ra, rb in pairs if (x := field(ra)) is not None and (y := field(rb))))

    def to_optimum(self, workload: str, policy: str) -> Spread:
        """Requests per task over the optimum's at the same mean latency, seed by seed."""
        frontier = self.frontiers[workload]
        return Spread(tuple(r.requests / frontier.requests(r.latency) for r in self.runs[workload, policy]))


def measure(seeds: int = SEEDS, rate_seeds: int = RATE_SEEDS, log: Callable[[str], None] | None = None) -> Measurements:
    """Every policy on every workload for each seed, the optimum of each workload, and the rate-limit rows."""
    started = time.monotonic()
    say = log or (lambda _: None)
    runs: dict[tuple[str, str], tuple[Result, ...]] = {}
    frontiers = {}
    for workload, distribution in WORKLOADS.items():
        say(f"schedule: {workload}...")
        frontiers[workload] = Frontier.of(distribution)
        for name, policy in POLICIES.items():
            runs[workload, name] = tuple(run(policy, distribution, seed=seed) for seed in range(1, seeds + 1))
    rates = []
    scenarios = (
        ("hidden limit, no max_rate", None, ""),
        ("hidden limit, max_rate=20", LIMIT, ""),
        ("advertised token bucket, no max_rate", None, "bucket"),
        ("advertised 1-s windows, no max_rate", None, "window"),
    )
    for name, max_rate, advertise in scenarios:
        say(f"rate limit: {name}...")
        results = []
        for seed in range(1, rate_seeds + 1):
            limit: Limit = Window(round(LIMIT)) if advertise == "window" else Bucket(LIMIT, LIMIT)
            results.append(
                run(
                    PollPolicy.adaptive(2.5),
                    WORKLOADS[UNIFORM],
                    seed=seed,
                    tasks=RATE_TASKS,
                    limit=limit,
                    advertise=bool(advertise),
                    max_rate=max_rate,
                    rtt=RATE_RTT,
                    concurrency=RATE_CONCURRENCY,
                )
            )
        rates.append(RateRow(name, max_rate, advertise, tuple(results)))
    return Measurements(runs, frontiers, tuple(rates), time.monotonic() - started)


# -- the report -----------------------------------------------------------------------------

Row = tuple[str, str, str, str]  # benchmark, measured, target, result


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def rows(m: Measurements) -> list[Row]:
    """The targets: the four comparisons (and the optimum beside each), the short tasks, the rate limit."""
    out: list[Row] = []
    for workload, adaptive, fixed in COMPARISONS:
        requests = m.ratio(workload, adaptive, fixed, lambda r: r.requests)
        latency = m.ratio(workload, adaptive, fixed, lambda r: r.latency)
        ok = requests.mean <= MAX_REQUESTS and latency.mean <= MAX_LATENCY
        frontier = m.frontiers[workload]
        best = Spread(tuple(frontier.requests(r.latency) / r.requests for r in m.runs[workload, fixed]))
        name = f"Schedule, {workload}: `{adaptive}` / `{fixed}`"
        out.append(
            (
                name,
                f"requests {requests.text()}, latency {latency.text()}",
                f"requests <= {MAX_REQUESTS}, latency <= {MAX_LATENCY}",
                _verdict(ok),
            )
        )
        out.append(
            (
                f"{name}: the optimum",
                f"optimum / `{fixed}` at its latency {best.text()}; `{adaptive}` / optimum at its latency "
                f"{m.to_optimum(workload, adaptive).text()}",
                "(reported)",
                "-",
            )
        )
    short = m.ratio(MIXTURE, "adaptive(2.5)", "fixed(5)", lambda r: r.short_latency)
    later = sum(value > 1 for value in short.values)
    out.append(
        (
            f"Schedule, mixture: mean latency of the tasks under {SHORT:g} s, `adaptive(2.5)` / `fixed(5)`",
            f"{short.text()} ({_mean(m, MIXTURE, 'adaptive(2.5)', 'short_latency'):.2f} vs"
            f" {_mean(m, MIXTURE, 'fixed(5)', 'short_latency'):.2f} s; later in {later} of {len(short.values)} seeds)",
            "<= 1",
            _verdict(short.mean <= 1),
        )
    )
    for row in m.rates:
        runs = row.runs
        share = Spread(tuple(r.throttled_late / r.sent_late for r in runs))
        throughput = Spread(tuple(r.throughput for r in runs))
        total = sum(r.throttled for r in runs)
        name = f"Rate limit {LIMIT:g}/s, {row.name}"
        if row.max_rate is None and not row.advertise:
            out.append(
                (
                    f"{name}: 429s after the first {WARMUP:g} s",
                    f"{share.mean:.2%} ({min(share.values):.2%}-{max(share.values):.2%}) of requests",
                    f"<= {MAX_THROTTLED:.0%}",
                    _verdict(share.mean <= MAX_THROTTLED),
                )
            )
            out.append(
                (
                    f"{name}: accepted requests/s while the demand exceeds the limit, / limit",
                    throughput.text(),
                    f">= {MIN_THROUGHPUT}",
                    _verdict(throughput.mean >= MIN_THROUGHPUT),
                )
            )
        else:
            out.append(
                (
                    f"{name}: 429s",
                    f"{total} in {sum(r.sent for r in runs):,} requests; throughput / limit {throughput.text()}",
                    "0",
                    _verdict(total == 0),
                )
            )
    return out


def _mean(m: Measurements, workload: str, policy: str, field: str) -> float:
    return m.spread(workload, policy, lambda r: getattr(r, field)).mean


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def policy_table(m: Measurements, workload: str) -> str:
    """Each policy on one workload: requests, latency, and the optimum at that latency."""
    body = []
    frontier = m.frontiers[workload]
    for name in POLICIES:
        requests = m.spread(workload, name, lambda r: r.requests)
        latency = m.spread(workload, name, lambda r: r.latency)
        short = m.spread(workload, name, lambda r: r.short_latency)
        body.append(
            (
                f"`{name}`",
                requests.text(),
                latency.text(),
                *((short.text(),) if workload == MIXTURE else ()),
                f"{frontier.requests(latency.mean):.2f}",
                m.to_optimum(workload, name).text(),
            )
        )
    header = (
        "policy",
        "requests per task",
        "mean detection latency (s)",
        *((f"the same, tasks under {SHORT:g} s",) if workload == MIXTURE else ()),
        "optimum at that latency",
        "requests / optimum",
    )
    return table(header, body)


def rate_table(m: Measurements) -> str:
    """The rate-limit scenarios, each figure the mean over the seeds."""
    body = []
    for row in m.rates:
        runs = row.runs

        def mean(field: Callable[[Result], float], runs: tuple[Result, ...] = runs) -> float:
            return statistics.fmean(field(r) for r in runs)

        body.append(
            (
                row.name,
                f"{mean(lambda r: r.throttled - r.throttled_late):.0f}",
                f"{mean(lambda r: r.throttled_late):.0f} ({mean(lambda r: r.throttled_late / r.sent_late):.2%})",
                f"{mean(lambda r: r.throughput):.3f}",
                f"{mean(lambda r: r.window):.0f} s ({mean(lambda r: r.backlog):.0%})",
                f"{mean(lambda r: r.requests):.2f}",
                f"{mean(lambda r: r.latency):.1f} s",
                f"{mean(lambda r: r.cpu / r.sent) * 1e3:.1f} ms",
            )
        )
    header = (
        "server",
        f"429s in the first {WARMUP:g} s",
        "429s after (share of requests)",
        "accepted/s in the window / limit",
        "window (share with a backlog)",
        "requests per task",
        "mean detection latency",
        "CPU per request",
    )
    return table(header, body)


def frontier_table(m: Measurements) -> str:
    """The optimum's requests per task at a few latencies."""
    latencies = (1.5, 2.5, 5.0)
    body = [
        (workload, *(f"{frontier.requests(x):.2f}" for x in latencies)) for workload, frontier in m.frontiers.items()
    ]
    return table(("distribution", *(f"at {x:g} s" for x in latencies)), body)


# The picture: one panel per workload, requests per task (y) against mean detection latency (x).
PANEL_W, PANEL_H, LEFT, RIGHT, TOP, BOTTOM = 360, 330, 52, 14, 62, 46
FIXED, ADAPTIVE = ("fixed(3)", "fixed(5)", "fixed(10)"), ("adaptive(1.5)", "adaptive(2.5)", "adaptive(5)")
COLOURS = {"fixed": "#1f77b4", "adaptive": "#d62728", "default": "#2ca02c", "optimum": "#555555"}


def svg(m: Measurements) -> str:
    """The picture, as SVG text."""
    points = {
        key: (m.spread(*key, lambda r: r.latency).mean, m.spread(*key, lambda r: r.requests).mean) for key in m.runs
    }
    x_max = math.ceil(max(x for x, _ in points.values()) + 0.5)
    y_max = 5 * math.ceil(max(y for _, y in points.values()) / 5 + 0.2)
    width = PANEL_W * len(WORKLOADS)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" viewBox="0 0 {width} {PANEL_H}"'
        ' font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{PANEL_H}" fill="white"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">Requests per task against mean detection'
        f" latency: {TASKS:,} tasks, first seen at ages 0-{SEEN:g} s, {PRIOR} durations known; mean of"
        f" {len(next(iter(m.runs.values())))} seeds</text>",
    ]
    legend = (
        ("fixed", "PollPolicy.fixed(3, 5, 10)", "square"),
        ("default", "PollPolicy() (the old curve)", "diamond"),
        ("adaptive", "PollPolicy.adaptive(1.5, 2.5, 5)", "circle"),
        ("optimum", "optimum (true distribution known)", "line"),
    )
    for i, (kind, label, shape) in enumerate(legend):
        key = 60.0 + i * 250
        parts.append(_marker(shape, key, 32, COLOURS[kind]))
        parts.append(f'<text x="{key + 10}" y="36">{label}</text>')
    for i, (workload, frontier) in enumerate(m.frontiers.items()):
        left, top = i * PANEL_W + LEFT, TOP
        inner_w, inner_h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM

        def sx(x: float, left: float = left, inner_w: float = inner_w) -> float:
            return left + inner_w * x / x_max

        def sy(y: float, top: float = top, inner_h: float = inner_h) -> float:
            return top + inner_h * (1 - y / y_max)

        parts.append(
            f'<text x="{left + inner_w / 2}" y="{top - 6}" text-anchor="middle" font-weight="bold">{workload}</text>'
        )
        parts.append(f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#999"/>')
        for tick in range(x_max + 1):
            at = sx(tick)
            parts.append(f'<line x1="{at:.1f}" y1="{top + inner_h}" x2="{at:.1f}" y2="{top}" stroke="#eee"/>')
            parts.append(f'<text x="{at:.1f}" y="{top + inner_h + 14}" text-anchor="middle">{tick}</text>')
        for tick in range(0, y_max + 1, 5):
            at = sy(tick)
            parts.append(f'<line x1="{left}" y1="{at:.1f}" x2="{left + inner_w}" y2="{at:.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{left - 5}" y="{at + 4:.1f}" text-anchor="end">{tick}</text>')
        parts.append(
            f'<text x="{left + inner_w / 2}" y="{top + inner_h + 32}" text-anchor="middle">mean detection latency (s)</text>'
        )
        parts.append(
            f'<text transform="translate({left - 34} {top + inner_h / 2}) rotate(-90)" text-anchor="middle">'
            "requests per task</text>"
        )
        curve = [(x, y) for x, y in frontier.points if 0 < x <= x_max and y <= y_max]
        parts.append(_polyline([(sx(x), sy(y)) for x, y in curve], COLOURS["optimum"], dash="5 3"))
        for kind, names, shape in (("fixed", FIXED, "square"), ("adaptive", ADAPTIVE, "circle")):
            xy = [(sx(points[workload, n][0]), sy(points[workload, n][1])) for n in names]
            parts.append(_polyline(xy, COLOURS[kind]))
            for name, (x, y) in zip(names, xy, strict=True):
                parts.append(_marker(shape, x, y, COLOURS[kind]))
                label = name[name.index("(") + 1 : -1]
                parts.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" fill="{COLOURS[kind]}">{label}</text>')
        x, y = sx(points[workload, "PollPolicy()"][0]), sy(points[workload, "PollPolicy()"][1])
        parts.append(_marker("diamond", x, y, COLOURS["default"]))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _polyline(xy: Sequence[tuple[float, float]], colour: str, dash: str = "") -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{dashes}/>'


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} {x - 6:.1f},{y:.1f}" fill="{colour}"/>'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>'
    return f'<line x1="{x - 8:.1f}" y1="{y:.1f}" x2="{x + 8:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="5 3"/>'


def findings(m: Measurements) -> str:
    """What the comparisons say, in words, from the figures."""
    lines = []
    for workload, adaptive, fixed in COMPARISONS:
        a_req, f_req = (m.spread(workload, p, lambda r: r.requests).mean for p in (adaptive, fixed))
        a_lat, f_lat = (m.spread(workload, p, lambda r: r.latency).mean for p in (adaptive, fixed))
        frontier = m.frontiers[workload]
        at_a, at_f = frontier.requests(a_lat), frontier.requests(f_lat)
        lines.append(
            f"- {workload}: `{adaptive}` sends {a_req:.2f} requests per task for a mean latency of {a_lat:.2f} s,"
            f" `{fixed}` {f_req:.2f} for {f_lat:.2f} s ({a_req / f_req:.2f}x the requests, {a_lat / f_lat:.2f}x the"
            f" latency). The optimum needs {at_f:.2f} at `{fixed}`'s latency ({at_f / f_req:.2f}x) and {at_a:.2f} at"
            f" `{adaptive}`'s: `{adaptive}` sends {a_req / at_a - 1:.0%} more than any schedule must"
            + (
                f"; at `{fixed}`'s latency no schedule meets the {MAX_REQUESTS}x target: the optimum needs"
                f" {frontier.latency(MAX_REQUESTS * f_req) / f_lat:.2f}x that latency for it."
                if at_f / f_req > MAX_REQUESTS
                else "."
            )
        )
    return "\n".join(lines)


def report(m: Measurements, load: tuple[float, float] | None = None) -> str:
    """SCHEDULE.md: the targets, the picture, every policy, the optimum, the rate limit, and how."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    targets = table(("Benchmark", "Measured", "Target", "Result"), rows(m))
    seeds, rate_seeds = len(next(iter(m.runs.values()))), len(m.rates[0].runs)
    loads = f"; load average {load[0]:.1f} before, {load[1]:.1f} after" if load else ""
    sections = "\n\n".join(f"### {workload}\n\n{policy_table(m, workload)}" for workload in WORKLOADS)
    return f"""# Polling schedule: requests per task against detection latency

`python tests/benchmarks/simulate.py` prints this report and rewrites this file and
`schedule.svg`; `make bench` runs it as well (`make bench ARGS=--schedule`: this alone). It is a
simulation on a virtual clock: the figures do not depend on the machine and repeat exactly (the
CPU column aside), so they change only when the scheduling core does.

## Last run

{now}; Python {sys.version.split()[0]}; {m.seconds:.0f} s on one core{loads}.
Ratios are means over {seeds} seeds, with the lowest and highest in brackets; targets are judged on the means.

{targets}

![Requests per task against mean detection latency, per policy and distribution](schedule.svg)

{findings(m)}

## How it is measured

- **The client** is the real core: `mountsea._scheduler.Scheduler`, with `_learning` and
  `_pacing`, reading a batch as `as_completed` does (until every task is done, no deadline). The
  simulator is its driver (`plan`, send, `record`, wait) and the server, on a virtual clock.
- **The workload** (issue 15): {TASKS:,} producer tasks created 0-{SEEN:g} s before the batch starts,
  so first seen at ages 0-{SEEN:g} s, with durations drawn from the distribution; the client has read
  {PRIOR} finished tasks of the same distribution before. Each answer carries `createdAt`,
  `finishedAt` once done, and a `Date` header in whole seconds, as HTTP dates are. Answers come back
  at once and any number may be in flight: the schedule alone is measured.
- **Detection latency**: when the batch hands a task out, minus when it finished (or minus the
  start, for a task already done when first seen). **Requests per task**: all requests sent, over
  the tasks. Each seed draws one set of tasks and prior durations that every policy meets, so the
  ratios are taken seed by seed ({seeds} seeds; {rate_seeds} for the rate-limit rows).
- **The optimum**: for the true distribution, known exactly, and each task's age known from its
  first poll, the schedule of polls with the fewest requests for a mean latency (the minimum of
  requests + mu x latency, for 26 values of mu; between two such schedules, mixing them reaches the
  line joining them). It is a dynamic programme over the age of the last poll, on a 0.1 s grid
  (`Frontier`): a bound that no schedule, learned or not, can beat at that latency. Its polls are
  dense where the tasks still running are likely to finish, about as the square root of the hazard.
- **The rate limit**: the server also keeps a token bucket of {LIMIT:g} requests/s, {LIMIT:g} deep and
  full at the start, and answers 429 (without `Retry-After`) when it is empty; the client is not
  told. {RATE_TASKS:,} tasks of the uniform workload, `adaptive(2.5)`, `max_concurrency={RATE_CONCURRENCY}` (the
  default) and {RATE_RTT * 1000:.0f} ms from each request to its answer. The *window* runs from {WARMUP:g} s to
  the last moment a due request was held back (for a token, or in the pause after a 429): the
  demand exceeds the limit there (the share of the window with a request held back says how much
  of it; 100 % is throughout). *Throughput*: requests sent in the window and accepted, per second,
  over {LIMIT:g}. The advertising servers add `RateLimit-Policy: "default";q=20;w=1` to every answer, and
  `RateLimit: "default";r=<whole tokens left>;t=<whole seconds until the bucket is full>` (token
  bucket) or `r=<left in this 1-s window>;t=<seconds to its end, rounded up>` (fixed windows of 20).
  *CPU per request*: the run's process time, simulated server included, over its requests.

## Every policy

Requests per task and latency: means over the seeds (lowest-highest). *Optimum at that latency*:
the fewest requests per task any schedule needs for the policy's mean latency.
`PollPolicy()` is the curve of before (1.5, 2.25, 3.4, then every 5 s, less up to 10 % jitter);
`adaptive(x)` asks for a mean latency of x s.

{sections}

## The optimum

Requests per task at a mean detection latency of:

{frontier_table(m)}

## The rate limit

{rate_table(m)}
"""


def main(argv: list[str] | None = None) -> int:
    """Measure, print the report, write SCHEDULE.md and schedule.svg."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per figure")
    parser.add_argument("--rate-seeds", type=int, default=RATE_SEEDS, help="seeds per rate-limit figure")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    m = measure(args.seeds, args.rate_seeds, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(write(m, (before, os.getloadavg()[0])))
    return 0


def write(m: Measurements, load: tuple[float, float] | None = None) -> str:
    """Write the report and the picture beside this file; returns the report."""
    text = report(m, load)
    REPORT.write_text(text, encoding="utf-8")
    PICTURE.write_text(svg(m), encoding="utf-8")
    return text


if __name__ == "__main__":
    sys.exit(main())
