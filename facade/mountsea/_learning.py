"""What a client learns of how long a service's tasks take, and when that says to poll a task again.

Polls of a task are best dense where tasks of its age are likely to finish and absent where they
cannot yet (about ``sqrt(1 / hazard)`` apart). The schedule is the exact optimum for the learned
estimate: it minimises the expected polls plus a price times the expected detection latency (a
dynamic programme over a grid of ages), the price found so that the latency is the one asked for.
It is computed once per estimate and latency; a poll then looks its next one up.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from array import array
from typing import Final

from ._task import Task

SAMPLES: Final = 200  # durations kept per service (a reservoir): 1.6 KB, enough for the quantiles that matter
HORIZON: Final = 1000  # a new duration replaces one with odds SAMPLES / HORIZON at least: the sample is of about the
# last thousand, so a service that gets faster or slower is relearned within a thousand tasks, not never
PLANS: Final = 8  # schedules kept per service, one per latency asked
MIN_SAMPLES: Final = 20  # fewer than this: poll on the fixed curve, skip no poll on a prior alone
BANDWIDTH: Final = 0.9  # times the spread of the log-durations, over n ** 0.2: Silverman's rule of thumb
NORMAL_FIT: Final = 0.886  # Lilliefors' 5 % critical value, times sqrt(n), of the distance to a fitted normal
KNOTS: Final = 128  # points of the estimate
STEP: Final = 0.015  # the ages a schedule is computed on: 1.5 % apart, 0.1 s at least, half the latency at most
TAIL: Final = 3  # durations learned that are too few to say when a task older than all the others may end
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
        self._ids = array("q", bytes(8 * SAMPLES))  # hashes of the task ids last learned, in a ring
        self._knots: tuple[array[float], array[float]] | None = None  # the distribution, rebuilt after a change
        self._plans: dict[float, tuple[array[float], array[float]]] = {}  # latency -> the ages, the next polls

    def add(self, seconds: float, rng: random.Random, task_id: str = "") -> None:
        """Learn one duration; past `SAMPLES`, each replaces a random one with the reservoir's odds (`HORIZON`).

        A task read again (a status page asking for it on every visit) teaches once: the hashes of the last
        `SAMPLES` ids learned are kept (1.6 KB), and a task among them is skipped.
        """
        if task_id:
            if (key := hash(task_id)) in self._ids:
                return
            self._ids[self._seen % SAMPLES] = key
        self._seen += 1
        if len(self._sorted) >= SAMPLES:
            if (slot := rng.randrange(min(self._seen, HORIZON))) >= SAMPLES:
                return
            del self._sorted[slot]  # a uniform pick: slots carry no order of arrival
        bisect.insort(self._sorted, seconds)
        self._knots = None
        self._plans.clear()

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
        # The spread is that of the densest half (as the IQR, for a normal sample): of one kind of
        # task where there are several (a mode), not of the gaps between them, which it would fill.
        # Silverman's width suits one smooth bump; where the sample is not one (a normal fit fails
        # Lilliefors' test), half of it keeps the edges of each kind sharp.
        n, half = len(logs), min(b - a for a, b in zip(logs, logs[len(logs) // 2 :], strict=False))
        width = BANDWIDTH * (half / 1.35 or statistics.pstdev(logs)) * n**-0.2
        width = max(width if _normal_fit(logs) <= NORMAL_FIT / math.sqrt(n) else width / 2, 0.01)
        low, high = logs[0] - 3 * width, logs[-1] + 3 * width
        grid = [low + (high - low) * i / (KNOTS - 1) for i in range(KNOTS)]
        raw = [sum(math.erf((g - x) / (width * math.sqrt(2))) for x in logs) for g in grid]
        ps = array("d", [(p - raw[0]) / (raw[-1] - raw[0]) for p in raw])
        self._knots = (array("d", map(math.exp, grid)), ps)
        return self._knots

    def done_probability(self, since: float, age: float) -> float:
        """P(done by ``age`` | not done at ``since``), ages in seconds; one half for a task not done at an age past
        every duration learned, of which they say nothing (ranked first, such tasks would take every token)."""
        alive = 1.0 - self._cdf(since)
        return 0.5 if alive <= 0 else min(1.0, (self._cdf(age) - self._cdf(since)) / alive)

    def next_delay(self, age: float, latency: float) -> float | None:
        """Seconds from ``age`` to the next poll for a mean detection latency of ``latency``, or None (too little
        data) for the caller's fixed curve.

        A task older than all but the `TAIL` longest durations seen is polled at least every ``2 * latency``: too
        few durations say when it may end (one long one would space its polls as far as it is from the rest), and
        polls that far apart see a task late by ``latency`` on average, wherever it ends."""
        if not self.ready:
            return None
        steady = 2 * latency
        if self._cdf(age) >= 1.0:
            return steady
        ages, then = self._plans.get(latency) or self._plan(latency)
        i = min(bisect.bisect_right(ages, age), len(ages) - 1)  # the next poll after age, between the grid's
        planned = then[i - 1] + (then[i] - then[i - 1]) * (age - ages[i - 1]) / (ages[i] - ages[i - 1]) - age
        return max(MIN_DELAY, min(planned, steady) if age >= self._sorted[-TAIL] else planned)

    def _plan(self, latency: float) -> tuple[array[float], array[float]]:
        """The ages of a grid, and for each the age of the next poll, for a mean latency of ``latency``."""
        ages = [0.0]
        while ages[-1] < (self._knots or self._estimate())[0][-1]:
            ages.append(ages[-1] + max(0.1, min(STEP * ages[-1], latency / 2)))  # polls ~2 latency apart fit
        cdf = [self._cdf(age) for age in ages]
        partial = [0.0]  # E[T; T <= age]
        for i in range(1, len(ages)):
            partial.append(partial[-1] + (cdf[i] - cdf[i - 1]) * (ages[i] + ages[i - 1]) / 2)
        price = 1.0 / latency  # of a second of latency, in polls: latency goes about as price ** -0.5
        for _ in range(6):
            then, late = _optimise(ages, cdf, partial, price)
            price *= (late / latency) ** 2
        if len(self._plans) >= PLANS:  # a caller asking for ever new latencies keeps the last few
            self._plans.pop(next(iter(self._plans)))
        self._plans[latency] = array("d", ages), array("d", (ages[k] for k in then))
        return self._plans[latency]


def _normal_fit(logs: list[float]) -> float:
    """The greatest distance between the sorted ``logs``' empirical CDF and the normal fitted to them (1: none fits)."""
    if (spread := statistics.pstdev(logs)) == 0:
        return 1.0
    normal, n = statistics.NormalDist(statistics.fmean(logs), spread), len(logs)
    return max(max((i + 1) / n - p, p - i / n) for i, p in enumerate(map(normal.cdf, logs)))


def _optimise(ages: list[float], cdf: list[float], partial: list[float], price: float) -> tuple[list[int], float]:
    """The schedule minimising E[polls] + price * E[latency] (a dynamic programme, backwards over
    the age of the last poll): the next poll's index for each age, and the mean latency from age 0.

    Polls at ``a_j`` then ``a_k`` see the tasks done in between ``a_k (F_k - F_j) - (M_k - M_j)``
    late in all (``M`` the partial mean); the cost is Monge, so the best ``k`` does not decrease with
    ``j``, and the scan for ``j`` stops at the best ``k`` of ``j + 1``."""
    n = len(ages)
    cost, late, then = [0.0] * n, [0.0] * n, [n - 1] * n
    for j in range(n - 2, -1, -1):
        if cdf[j] == cdf[j + 1]:  # none ends in between: the same next poll as from a_{j+1}, at once
            cost[j], late[j], then[j] = cost[j + 1], late[j + 1], then[j + 1]
            continue
        best, wait = math.inf, 0.0
        for k in range(j + 1, then[j + 1] + 1 if j < n - 2 else n):
            missed = ages[k] * (cdf[k] - cdf[j]) - (partial[k] - partial[j])
            if (value := price * missed + cost[k]) <= best:
                best, wait, then[j] = value, missed, k
        cost[j], late[j] = 1.0 - cdf[j] + best, wait + late[then[j]]
    return then, late[0]
