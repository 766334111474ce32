"""What a client learns of how long a service's tasks take, and when that says to poll a task again.

Polls of a task are best spaced ``sqrt(K / hazard)`` apart (fewest polls for a given mean
latency): dense where tasks of its age are likely to finish, none where they cannot yet. In
steps: the next pause ``d`` from age ``a`` solves ``d * P(done by a + d | not done at a) = K``,
and ``K`` is found by replaying the learned durations so that their mean detection latency
is the one asked for.
"""

from __future__ import annotations

import bisect
import random
import statistics
from array import array
from typing import Final

from ._task import Task

__all__ = ["Durations", "age_of", "duration_of"]

SAMPLES: Final = 200  # durations kept per service (a reservoir): 1.6 KB, enough for the quantiles that matter
MIN_SAMPLES: Final = 20  # fewer than this: poll on the fixed curve, skip no poll on a prior alone
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
        """P(duration <= t): the sample's distribution, linear between its points, with a short tail after them."""
        if self._knots is None:
            xs = self._sorted
            n = len(xs)
            tail = xs[-1] + max(1.0, 2 * (xs[-1] - xs[0]) / n)  # about two gaps past the longest
            self._knots = (array("d", [*xs, tail]), array("d", [i / n for i in range(n + 1)]))
        xs, ps = self._knots
        i = bisect.bisect_right(xs, t)
        if i == 0:
            return 0.0
        if i == len(xs):
            return 1.0
        x0, x1 = xs[i - 1], xs[i]
        return ps[i - 1] + (ps[i] - ps[i - 1]) * (t - x0) / (x1 - x0)

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
                k *= (latency / max(self._latency(k), 1e-3)) ** 2
            self._scale[latency] = k
        return self._pause(age, k)

    def _pause(self, age: float, k: float) -> float:
        start = self._cdf(age)
        assert self._knots is not None
        low, high = 0.0, self._knots[0][-1] - age + k  # past the last knot P(done) is 1, so high * 1 >= K
        for _ in range(30):  # bisection: d * P(done within d) grows with d
            mid = (low + high) / 2
            if mid * (self._cdf(age + mid) - start) < k * (1.0 - start):
                low = mid
            else:
                high = mid
        return max(MIN_DELAY, high)

    def _latency(self, k: float) -> float:
        """The mean detection latency over the sample, each task polled from age 0 on the pauses K gives."""
        grid, age = [0.0], 0.0
        while age < self._sorted[-1]:
            age += self._pause(age, k)
            grid.append(age)
        return statistics.fmean(grid[bisect.bisect_left(grid, took)] - took for took in self._sorted)
