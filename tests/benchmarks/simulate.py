"""The real scheduling core on a virtual clock: requests per task versus detection latency, and pacing.

Drives `mountsea._scheduler.Scheduler` as a driver would (plan, send, record), against a
simulated server whose tasks finish after durations drawn from a distribution. Answers
come back at once and carry ``createdAt``, ``finishedAt`` and a ``Date`` header (whole
seconds, as HTTP dates are). ``python tests/benchmarks/simulate.py`` prints the tables.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

import attrs

from mountsea import PollPolicy, Task, TaskRef
from mountsea._pacing import Pacer
from mountsea._scheduler import Call, ClientState, Scheduler

EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
Sampler = Callable[[random.Random], float]


def uniform(rng: random.Random) -> float:
    return rng.uniform(30, 120)  # the docs: music takes 30-120 s


def lognormal(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(60), 0.5)  # median 60 s, a long tail


def mixture(rng: random.Random) -> float:
    return rng.uniform(2, 10) if rng.random() < 0.3 else rng.uniform(30, 120)  # uploads and stems beside music


@attrs.define
class Bucket:
    """A server-side token bucket: ``rate`` per second, ``burst`` deep."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = 0.0

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@attrs.frozen
class Result:
    requests_per_task: float
    latency: float  # mean detection latency, s
    short_latency: float | None  # the same, over tasks shorter than 15 s
    throttled: int = 0  # 429s after the first 10 s
    sent_after_10s: int = 0
    span: float = 0.0


def run(
    policy: PollPolicy,
    sampler: Sampler,
    *,
    tasks: int = 1000,
    prior: int = 50,
    seed: int = 1,
    limit: Bucket | None = None,
    max_rate: float | None = None,
    concurrency: int = 10_000,
) -> Result:
    rng = random.Random(seed)
    state = ClientState(rng=random.Random(seed + 1), pacer=Pacer(max_rate))
    for _ in range(prior):
        state.durations["producer"].add(sampler(rng), state.rng)
    start = 1000.0  # the virtual monotonic clock; the server's Unix time is EPOCH + (now - start) + offset
    created: dict[str, float] = {}  # task id -> creation time on the virtual clock
    duration: dict[str, float] = {}
    for i in range(tasks):
        created[f"t{i}"] = start - rng.uniform(0, 10)  # first seen at ages 0-10 s
        duration[f"t{i}"] = sampler(rng)
    call = Call(until_done=True, single=False, deadline=None, policy=policy, max_retries=2)
    refs = [TaskRef("producer", task_id) for task_id in created]
    scheduler = Scheduler(refs, call=call, state=state, now=start, max_concurrency=concurrency)
    now, sent, throttled, after, detected = start, 0, 0, 0, {}
    while not (plan := scheduler.plan(now)).done:
        for task in plan.ready:
            detected[task.id] = now
        for tracked, _ in plan.send:
            sent += 1
            after += now - start >= 10
            date = email.utils.formatdate(EPOCH.timestamp() + now, usegmt=True)
            if limit is not None and not limit.allow(now):
                throttled += now - start >= 10
                error = _rate_limited(tracked.ref)
                scheduler.record(tracked, error, now, {"date": date})
                continue
            task_id = tracked.ref.id
            finish = created[task_id] + duration[task_id]
            done = now >= finish
            task = Task(
                id=task_id,
                service="producer",
                status="completed" if done else "processing",
                created_at=EPOCH + datetime.timedelta(seconds=created[task_id]),
                finished_at=EPOCH + datetime.timedelta(seconds=finish) if done else None,
            )
            scheduler.record(tracked, task, now, {"date": date})
        if not plan.send and not plan.ready:
            now += plan.wait if plan.wait is not None else 0.0
    finish_at = {t: created[t] + duration[t] for t in created}
    latencies = [detected[t] - max(finish_at[t], start) for t in created]
    short = [detected[t] - max(finish_at[t], start) for t in created if duration[t] < 15]
    return Result(
        sent / tasks,
        statistics.fmean(latencies),
        statistics.fmean(short) if short else None,
        throttled,
        after,
        now - start,
    )


def _rate_limited(ref: TaskRef) -> Any:
    from mountsea import RateLimitError

    return RateLimitError("HTTP 429", status_code=429, service=ref.service, task_id=ref.id)


def main() -> None:
    rows = [
        ("uniform 30-120 s", uniform, PollPolicy.adaptive(2.5), PollPolicy.fixed(5)),
        ("uniform 30-120 s", uniform, PollPolicy.adaptive(1.5), PollPolicy.fixed(3)),
        ("log-normal, median 60 s", lognormal, PollPolicy.adaptive(2.5), PollPolicy.fixed(5)),
        ("mixture 30% 2-10 s", mixture, PollPolicy.adaptive(2.5), PollPolicy.fixed(5)),
    ]
    for name, sampler, adaptive, fixed in rows:
        a, f = run(adaptive, sampler), run(fixed, sampler)
        print(
            f"{name:26} latency={adaptive.latency}: requests {a.requests_per_task:.2f} vs {f.requests_per_task:.2f}"
            f" ({a.requests_per_task / f.requests_per_task:.2f}x), latency {a.latency:.2f} vs {f.latency:.2f}"
            f" ({a.latency / f.latency:.2f}x)"
            + (f", short {a.short_latency:.2f} vs {f.short_latency:.2f}" if a.short_latency and f.short_latency else "")
        )
    for label, max_rate in (("hidden 20/s limit", None), ("max_rate=20", 20.0)):
        r = run(PollPolicy.adaptive(2.5), uniform, limit=Bucket(20, 20, tokens=20), max_rate=max_rate, tasks=3000)
        span = r.span
        print(
            f"{label}: 429s after 10 s {r.throttled}/{r.sent_after_10s} = {r.throttled / max(r.sent_after_10s, 1):.2%},"
            f" requests/s {r.requests_per_task * 3000 / span:.1f} over {span:.0f} s"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
