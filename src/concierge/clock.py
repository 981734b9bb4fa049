"""Clocks: every interval in Concierge is measured on an injected monotonic clock.

Tests swap in :class:`concierge.testing.clock.FakeClock`. Standard library only.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What policy code needs from time: a monotonic reading in seconds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


class MonotonicClock:
    """The real clock (``CLOCK_MONOTONIC``, shared by every process of one boot)."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary point, never going backwards."""
        return time.monotonic()


def monotonic_ns() -> int:
    """Monotonic nanoseconds, the unit of envelope deadlines."""
    return time.monotonic_ns()
