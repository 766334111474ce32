"""When to ask again: `PollPolicy` for a task not done yet; backoff and ``Retry-After`` after a failure."""

from __future__ import annotations

import datetime
import email.utils
import functools
import math
import random
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._errors import APIConnectionError, APIError, APIStatusError

# Backoff after a transient failure: 0.5 s, 1 s, 2 s, ... up to 8 s (openai-python's numbers).
INITIAL_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 8.0
# The longest Retry-After we obey. A server asking for more is clamped to this so one bad header cannot park a client
# for hours; a wait's own deadline still caps it.
MAX_RETRY_AFTER: Final = 60.0


def is_retryable(error: APIError) -> bool:
    """True for transient failures: no answer, a timeout, 408, 429 or any 5xx."""
    if isinstance(error, APIStatusError):
        return error.status_code in {408, 429} or 500 <= error.status_code <= 599
    return isinstance(error, APIConnectionError)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a server asked us to wait, or None if it did not ask in a usable way.

    Tries ``retry-after-ms`` (milliseconds), then ``retry-after`` as seconds, then as an HTTP date measured against
    ``now`` (a Unix time). NaN, infinite, negative and unparseable values give None; a date in the past gives 0.
    ``headers`` must look up names case-insensitively (``httpx.Headers`` does).
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        if (value := headers.get(name)) is None:
            continue
        try:
            seconds: float | None = float(value.strip()) * scale
        except ValueError:
            when = http_date(value) if name == "retry-after" else None
            seconds = None if when is None else max(0.0, when - now)
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


@functools.lru_cache(maxsize=4)  # every answer of a second carries the same Date: parsed once (9 µs)
def http_date(value: str) -> float | None:
    """An HTTP date (a ``Date`` or ``Retry-After`` header) as a Unix time, or None if it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # parsedate gives a naive time for "-0000": still GMT
    return when.replace(tzinfo=when.tzinfo or datetime.UTC).timestamp()


def retry_delay(failures: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number ``failures`` (1 for the first retry).

    A server's Retry-After wins, clamped to `MAX_RETRY_AFTER`. Otherwise, or if it says 0 (a server saying so to
    every retry would get them as fast as it answers), the backoff doubles up to `MAX_RETRY_DELAY`, less up to 25 %
    jitter, so that clients that failed together do not retry together.
    """
    if retry_after:
        return min(retry_after, MAX_RETRY_AFTER)
    exponent = min(max(failures - 1, 0), 32)  # past 2**32 the cap has long applied
    return min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0**exponent) * (1 - 0.25 * rng.random())


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"PollPolicy takes numbers of seconds, not {value!r}"
        raise ValueError(msg)
    return float(value)


@attrs.frozen
class PollPolicy:
    """How often `wait()` asks for a task, in seconds.

    The n-th pause (from 0) is ``min(maximum, initial * multiplier ** n) * (1 - jitter * U)`` with ``U`` uniform in
    [0, 1). The defaults follow the API docs: music takes 30-120 s and the docs advise polling every 3-5 s, so start
    at 1.5 s (short tasks finish early), grow by half each time, and settle at 5 s: 1.5, 2.25, 3.4, 5, 5, ... A 10 %
    downward jitter keeps many waiting clients from polling in lockstep. With a ``latency`` (`adaptive`), a task's
    next poll is placed from its age and the learned durations of its service instead (see `_learning`), the curve
    serving until they are known; the jitter is then spread evenly around that moment (``1 + jitter * (U - 0.5)``),
    which keeps the planned mean: a downward one polls early by half of it on average, 5 % more requests.
    """

    initial: float = attrs.field(default=1.5, converter=_seconds)
    maximum: float = attrs.field(default=5.0, converter=_seconds)
    multiplier: float = attrs.field(default=1.5, converter=_seconds)
    jitter: float = attrs.field(default=0.1, converter=_seconds)
    latency: float | None = attrs.field(default=None, converter=attrs.converters.optional(_seconds))

    def __attrs_post_init__(self) -> None:
        fits = {  # NaN fails every comparison
            "initial": self.initial > 0,
            "maximum": self.initial <= self.maximum < math.inf,
            "multiplier": 1 <= self.multiplier < math.inf,
            "jitter": 0 <= self.jitter < 1,
            "latency": self.latency is None or 0 < self.latency < math.inf,
        }
        for name in (name for name, ok in fits.items() if not ok):
            msg = f"PollPolicy.{name} is out of range in {self!r}: needs 0 < initial <= maximum, 1 <= multiplier, 0 <= jitter < 1, 0 < latency"
            raise ValueError(msg)

    @classmethod
    def adaptive(cls, latency: float = 2.5) -> PollPolicy:
        """Poll each task when it is likely done: a mean detection latency of about ``latency`` seconds
        with as few requests as the durations the client has read allow (the default curve until then)."""
        return cls(latency=latency)

    @classmethod
    def fixed(cls, interval: float) -> PollPolicy:
        """Poll every ``interval`` seconds, without growth or jitter."""
        return cls(initial=interval, maximum=interval, multiplier=1.0, jitter=0.0)

    def delay(self, polls: int, rng: random.Random) -> float:
        """The pause after the ``polls``-th answer (``polls`` counts from 1)."""
        try:
            base = min(self.maximum, self.initial * self.multiplier ** max(polls - 1, 0))
        except OverflowError:  # the maximum has long applied
            base = self.maximum
        return base * (1 - self.jitter * rng.random()) if self.jitter else base


DEFAULT_POLL_POLICY: Final = PollPolicy.adaptive()  # what poll=None means
