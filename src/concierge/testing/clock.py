"""A clock that only moves when a test says so (for backoff and lease policy tests)."""

from __future__ import annotations


class FakeClock:
    """Monotonic clock under test control."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        """The current fake reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds
