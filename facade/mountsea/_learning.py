"""What a client learns of how long a service's tasks take, and when that says to poll a task again.

Polls of a task are best spaced ``sqrt(K / hazard)`` apart (fewest polls for a given mean
latency): dense where tasks of its age are likely to finish, none where they cannot yet. In
steps: the next pause ``d`` from age ``a`` solves ``d * P(done by a + d | not done at a) = K``,
and ``K`` is found by replaying the learned durations so that their mean detection latency
is the one asked for.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from array import array
from typing import Final

from ._task import Task

__all__ = ["Durations", "age_of", "duration_of"]

SAMPLES: Final = 200  # durations kept per service (a reservoir): 1.6 KB, enough for the quantiles that matter
MIN_SAMPLES: Final = 20  # fewer than this: poll on the fixed curve, skip no poll on a prior alone
LATE: Final = 1.5  # no pause makes the tasks likely to finish in it wait more than 1.5x the target, on average
BANDWIDTH: Final = 0.45  # times the spread of the log-durations, over n ** 0.2: half of Silverman's 0.9
KNOTS: Final = 128  # points of the estimate
MIN_DELAY: Final = 0.5  # seconds: no task is polled more than twice a second, however likely it is done


def age_of(task: Task, date: float | None) -> float | None:
    """The task's age (s) in an answer of ``date``, on the server's clock alone: ``date`` minus ``createdAt``."""
    if task.created_at is None or date is None:
        return None
    return max(0.0, date - task.created_at.timestamp())


def duration_of(task: Task) -> float | None:
    """How long a finished task took (s), from its ``createdAt`` and ``finishedAt``."""
    if not task.done or task.created_at is None or task.finished_at is None:
        return None
    seconds = (task.finished_at - task.created_at).total_seconds()
    return seconds if seconds >= 0 else None


class Durations:
    """One service's task durations: a uniform sample of every one read, of bounded size."""

    def __init__(self) -> None:
        self._sorted = array("d")  # the sample, sorted
        self._seen = 0  # durations offered, for the reservoir
        self._knots: tuple[array[float], array[float]] | None = None  # the distribution, rebuilt after a change
        self._scale: dict[float, float] = {}  # latency -> K

    def add(self, seconds: float, rng: random.Random) -> None:
        """Learn one duration; past `SAMPLES`, each replaces a random one with the reservoir's odds."""
        self._seen += 1
        if len(self._sorted) >= SAMPLES:
            if (slot := rng.randrange(self._seen)) >= SAMPLES:
                return
            del self._sorted[slot]  # a uniform pick: slots carry no order of arrival
        bisect.insort(self._sorted, seconds)
        self._knots = None
        self._scale.clear()

    @property
    def ready(self) -> bool:
        return len(self._sorted) >= MIN_SAMPLES

    def _cdf(self, t: float) -> float:
        """P(duration <= t), linear between the knots of the estimate."""
        xs, ps = self._knots or self._estimate()
        i = bisect.bisect_right(xs, t)
        if i == 0:
            return 0.0
        if i == len(xs):
            return 1.0
        return ps[i - 1] + (ps[i] - ps[i - 1]) * (t - xs[i - 1]) / (xs[i] - xs[i - 1])

    def _estimate(self) -> tuple[array[float], array[float]]:
        # A kernel estimate over log-durations: the sample alone would place polls on its own
        # gaps, and in logs one bandwidth fits tasks of seconds and tasks of minutes alike.
        logs = [math.log(max(took, 0.1)) for took in self._sorted]
        quartiles = statistics.quantiles(logs, n=4)
        spread = min(statistics.pstdev(logs), (quartiles[2] - quartiles[0]) / 1.34) or statistics.pstdev(logs)
        width = max(BANDWIDTH * spread * len(logs) ** -0.2, 0.01)  # Silverman's rule, narrowed
        low, high = logs[0] - 3 * width, logs[-1] + 3 * width
        grid = [low + (high - low) * i / (KNOTS - 1) for i in range(KNOTS)]
        raw = [sum(math.erf((g - x) / (width * math.sqrt(2))) for x in logs) for g in grid]
        ps = array("d", [(p - raw[0]) / (raw[-1] - raw[0]) for p in raw])
        self._knots = (array("d", map(math.exp, grid)), ps)
        return self._knots

    def done_probability(self, since: float, age: float) -> float:
        """P(done by ``age`` | not done at ``since``), ages in seconds."""
        alive = 1.0 - self._cdf(since)
        return 1.0 if alive <= 0 else min(1.0, (self._cdf(age) - self._cdf(since)) / alive)

    def next_delay(self, age: float, latency: float) -> float | None:
        """Seconds from ``age`` to the next poll for a mean detection latency of ``latency``, or None
        (too little data, or a task older than any seen) for the caller's fixed curve."""
        if not self.ready or self._cdf(age) >= 1.0:
            return None
        k = self._scale.get(latency)
        if k is None:
            k = latency  # any start: the latency grows about as sqrt(K), so four steps settle it
            for _ in range(4):
                k *= (latency / max(self._latency(k, latency), 1e-3)) ** 2
            self._scale[latency] = k
        return self._pause(age, k, latency)

    def _pause(self, age: float, k: float, latency: float) -> float:
        start = self._cdf(age)
        low, high = (
            0.0,
            (self._knots or self._estimate())[0][-1] - age + k,
        )  # past the last knot P(done) is 1, so high * 1 >= K
        for _ in range(30):  # bisection: d * P(done within d) grows with d
            mid = (low + high) / 2
            if mid * (self._cdf(age + mid) - start) < k * (1.0 - start):
                low = mid
            else:
                high = mid
        if self._overshoot(age, high) > LATE * latency:  # tasks likely done soon would be seen late
            low = 0.0
            for _ in range(20):
                mid = (low + high) / 2
                low, high = (mid, high) if self._overshoot(age, mid) <= LATE * latency else (low, mid)
        return max(MIN_DELAY, high)

    def _overshoot(self, age: float, pause: float) -> float:
        """The mean wait, past its finish, of a task that finishes within ``pause`` of ``age``."""
        start = self._cdf(age)
        mass = self._cdf(age + pause) - start
        steps = [self._cdf(age + pause * i / 8) - start for i in range(9)]
        return pause * (sum(steps) - (steps[0] + steps[-1]) / 2) / 8 / mass if mass > 0 else 0.0

    def _latency(self, k: float, latency: float) -> float:
        """The mean detection latency over the estimate, tasks polled from age 0 on the pauses K gives."""
        xs, ps = self._knots or self._estimate()
        durations = []
        for i in range(SAMPLES):  # the estimate's quantiles
            q = (i + 0.5) / SAMPLES
            j = min(bisect.bisect_right(ps, q), len(ps) - 1)
            durations.append(xs[j - 1] + (xs[j] - xs[j - 1]) * (q - ps[j - 1]) / (ps[j] - ps[j - 1]))
        grid, age = [0.0], 0.0
        while age < durations[-1]:
            age += self._pause(age, k, latency)
            grid.append(age)
        return statistics.fmean(grid[bisect.bisect_left(grid, took)] - took for took in durations)
