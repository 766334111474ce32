"""Which failures are retried, and how long to wait before trying again."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
from collections.abc import Mapping
from typing import Final

from ._errors import APIConnectionError, APIError, APIStatusError

__all__ = ["MAX_RETRY_AFTER", "is_retryable", "parse_retry_after", "retry_delay"]

# Backoff after a transient failure: 0.5 s, 1 s, 2 s, ... up to 8 s (openai-python's numbers).
INITIAL_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 8.0
# The longest Retry-After we obey. A server asking for more is clamped to this so one
# bad header cannot park a client for hours; a wait's own deadline still caps it.
MAX_RETRY_AFTER: Final = 60.0


def is_retryable(error: APIError) -> bool:
    """True for transient failures: no answer, a timeout, 408, 429 or any 5xx."""
    if isinstance(error, APIStatusError):
        return error.status_code in {408, 429} or 500 <= error.status_code <= 599
    return isinstance(error, APIConnectionError)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a server asked us to wait, or None if it did not ask in a usable way.

    Tries ``retry-after-ms`` (milliseconds), then ``retry-after`` as seconds, then as an
    HTTP date measured against ``now`` (a Unix time). NaN, infinite, negative and
    unparseable values give None; a date in the past gives 0. ``headers`` must look up
    names case-insensitively (``httpx.Headers`` does).
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        if (value := headers.get(name)) is None:
            continue
        try:
            seconds: float | None = float(value.strip()) * scale
        except ValueError:
            seconds = _seconds_until_date(value, now) if name == "retry-after" else None
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _seconds_until_date(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # parsedate gives a naive time for "-0000": still GMT
    return max(0.0, when.replace(tzinfo=when.tzinfo or datetime.UTC).timestamp() - now)


def retry_delay(failures: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number ``failures`` (1 for the first retry).

    A server's Retry-After wins, clamped to `MAX_RETRY_AFTER`. Otherwise the backoff doubles up to
    `MAX_RETRY_DELAY`, less up to 25 % jitter, so that clients that failed together do not retry together.
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    exponent = min(max(failures - 1, 0), 32)  # past 2**32 the cap has long applied
    return min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2.0**exponent) * (1 - 0.25 * rng.random())
