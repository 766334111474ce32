"""How fast a client may send: a token bucket at the lowest of three ceilings.

The user's ``max_rate``; the limit the server advertises in its answers (the IETF httpapi draft's ``RateLimit``/
``RateLimit-Policy`` fields, the older drafts' ``RateLimit-Limit``, ``-Remaining`` and ``-Reset``, or the common
``X-RateLimit-*`` trio); and the rate that 429s have taught: each cuts it to a share of what the server accepted, and
each accepted request raises it a little (additive increase, multiplicative decrease, as TCP shares a link). Without
any of them, no request waits.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from typing import Final

from ._retry import MAX_RETRY_AFTER

DECREASE: Final = 0.85  # a 429 cuts the rate to this share of the rate the server accepted
INCREASE: Final = 0.015  # requests/s gained per accepted request: from 17 back to 20 req/s in 10 s
FLOOR: Final = 1.0  # requests/s: however many 429s come, the client keeps asking
CALM: Final = 1.0  # seconds after a cut in which 429s (to requests sent at the old rate) cut no further; also the
# least span a rate is measured over
EPOCH: Final = 1e9  # a reset above this many seconds is a Unix time (X-RateLimit-Reset on some APIs)


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _items(value: str) -> list[dict[str, float]]:
    """A structured-field list's items, each as its numeric parameters; a bare leading number is ``""``."""
    items = []
    for item in value.split(","):
        params: dict[str, float] = {}
        for position, part in enumerate(item.split(";")):
            key, equals, text = part.partition("=")
            key, text = (key.strip().lower(), text) if equals else ("" if position == 0 else key, key)
            if (number := _number(text)) is not None:
                params[key] = number
        items.append(params)
    return items


def advertises(headers: Mapping[str, str]) -> bool:
    """True if an answer's headers speak of a rate limit (most answers do not: the quick test first)."""
    return any("ratelimit" in name.lower() for name in headers)


def advertised(headers: Mapping[str, str], date: float | None) -> tuple[float | None, list[tuple[float, float]]]:
    """What an answer's headers say of the limit: a rate (quota / window, per s) and the (remaining, seconds to reset)
    windows. ``date`` (the answer's, Unix time) turns a reset given as a Unix time into seconds. Values that do not
    parse are ignored; of several policies, the shortest window's rate (a daily quota's average would pace a client
    to one request a minute, while what is left of it, if it says, is a window); resets are capped as Retry-After is,
    so that no header (a Unix time in milliseconds, say) parks a client for hours."""
    rates = []
    for item in _items(headers.get("ratelimit-policy", "")):
        quota, window = item.get("q", item.get("")), item.get("w")
        if quota and window:  # a quota of none is no limit one could pace to
            rates.append((window, quota / window))
    items = _items(headers.get("ratelimit", ""))
    if not any("r" in item or "t" in item for item in items):  # the older draft: limit=, remaining=, reset=
        items.append({k: v for item in items for k, v in item.items()})
    windows = [(item.get("r", item.get("remaining")), item.get("t", item.get("reset"))) for item in items]
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining, reset = (_number(headers.get(prefix + name, "")) for name in ("remaining", "reset"))
        if reset is not None and reset > EPOCH:
            reset = None if date is None else max(0.0, reset - date)
        windows.append((remaining, reset))
    known = [(r, min(t, MAX_RETRY_AFTER)) for r, t in windows if r is not None and t is not None]
    return (min(rates)[1] if rates else None, known)


def _rate(times: deque[float], now: float) -> float:
    """Events per second over ``times``, those of the last two seconds (the older dropped), over one second at least:
    a burst is no rate."""
    while times and times[0] < now - 2 * CALM:
        times.popleft()
    return (len(times) - 1) / max(times[-1] - times[0], CALM) if times else 0.0


class Pacer:
    """A client's request rate, shared by all its calls; `take` before each request, `observe` each answer."""

    def __init__(self, max_rate: float | None = None) -> None:
        self.max_rate = max_rate
        self.learned: float | None = None  # the 429-taught rate, None until the first 429
        self._policy: float | None = None  # the server's advertised quota per second
        self._window: tuple[float, float, float] | None = None  # (rate, until, pace after): the server's window
        self._tokens, self._filled = 1.0, -math.inf  # the bucket holds at most one request: no burst
        self._answered: deque[float] = deque()  # when the answers of the last two seconds came
        self._accepted: deque[float] = deque()  # ... and those not 429
        self._cut = -math.inf
        self._lock = threading.Lock()

    def rate(self, now: float) -> float | None:
        """Requests per second allowed at ``now`` (None: no ceiling)."""
        window = None if self._window is None else self._window[0] if now < self._window[1] else self._window[2]
        return min((r for r in (self.max_rate, self.learned, self._policy, window) if r is not None), default=None)

    def take(self, now: float) -> float:
        """0.0, a request's token taken, if one may go at ``now``; else the seconds until one may."""
        rate = self.rate(now)
        if rate is None:
            return 0.0
        if rate <= 0:  # the server's window is spent: wait for its reset
            assert self._window is not None
            return self._window[1] - now
        with self._lock:  # calls on several threads (the sync client's) share one bucket: one token, one request
            self._tokens = min(1.0, self._tokens + max(0.0, now - self._filled) * rate)  # a thread's older `now`
            self._filled = max(self._filled, now)
            if self._tokens >= 1.0 - 1e-9:  # float rounding must not leave a wait too short to advance a clock
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / rate

    def observe(self, status_code: int, headers: Mapping[str, str], now: float, date: float | None) -> None:
        """An answer of ``status_code`` came at ``now``; ``date`` is its ``Date`` (Unix time), if it has one."""
        if self.rate(now) is None:  # requests went unpaced: should a ceiling come now, the next waits a token
            self._tokens, self._filled = 0.0, now
        with self._lock:
            self._answered.append(now)
            if status_code != 429:
                self._accepted.append(now)
            answered, accepted = _rate(self._answered, now), _rate(self._accepted, now)  # the older moments dropped
            if status_code != 429:
                if self.learned is not None:
                    self.learned += INCREASE
            # The cut is from what the server accepted lately; a client asking more slowly than once a second is left
            # to the backoff.
            elif now - self._cut >= CALM and answered > FLOOR:
                self.learned = max(FLOOR, DECREASE * min(accepted, self.learned or math.inf))
                self._cut = now
        if not advertises(headers):
            return
        policy, windows = advertised(headers, date)
        if policy is not None:
            self._policy = policy
        if windows:
            remaining, reset = min(windows, key=lambda w: w[0] / w[1] if w[1] else math.inf)
            rate = remaining / reset if reset else math.inf
            # Past the reset, until an answer tells the next window, the pace this one had: not a burst into it.
            pace = max(FLOOR, rate) if 0 < rate < math.inf else FLOOR if self._window is None else self._window[2]
            self._window = (rate, now + reset, pace)
