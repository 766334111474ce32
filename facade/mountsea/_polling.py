"""`PollPolicy`: how often a task that is not done yet is asked for again."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = ["DEFAULT_POLL_POLICY", "PollPolicy"]


def _check(fits: Callable[[float], bool], what: str) -> Callable[[Any, attrs.Attribute[float], float], None]:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and fits(value)):
            msg = f"PollPolicy.{attribute.name} must be a finite number {what}, not {value!r}"
            raise ValueError(msg)

    return check


@attrs.frozen
class PollPolicy:
    """How often `wait()` asks for a task, in seconds.

    The n-th pause (from 0) is ``min(maximum, initial * multiplier ** n) * (1 - jitter * U)``
    with ``U`` uniform in [0, 1). The defaults follow the API docs: music takes 30-120 s
    and the docs advise polling every 3-5 s, so start at 1.5 s (short tasks finish
    early), grow by half each time, and settle at 5 s: 1.5, 2.25, 3.4, 5, 5, ...
    A 10 % downward jitter keeps many waiting clients from polling in lockstep.
    """

    initial: float = attrs.field(default=1.5, converter=float, validator=_check(lambda v: v > 0, "> 0"))
    maximum: float = attrs.field(default=5.0, converter=float, validator=_check(lambda v: v > 0, "> 0"))
    multiplier: float = attrs.field(default=1.5, converter=float, validator=_check(lambda v: v >= 1, ">= 1"))
    jitter: float = attrs.field(default=0.1, converter=float, validator=_check(lambda v: 0 <= v < 1, "in [0, 1)"))

    @maximum.validator
    def _at_least_initial(self, _: attrs.Attribute[float], value: float) -> None:
        if value < self.initial:
            msg = f"PollPolicy.maximum ({value!r}) must be >= initial ({self.initial!r})"
            raise ValueError(msg)

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


DEFAULT_POLL_POLICY: Final = PollPolicy()
