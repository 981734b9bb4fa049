"""Restart policy: exit classification, jittered exponential backoff, intensity window.

Pure functions and small classes over an injected clock; no zmq, no os, no pykka.
"""

from __future__ import annotations

import collections
import enum
import random
import signal

from concierge.errors import ExitCode


class ExitClass(enum.StrEnum):
    """What an exit means for the restart decision."""

    NORMAL = "normal"  # 0
    CONFIG = "config"  # 64 / 78: never restarted (no hot loop on a bad config)
    UNAVAILABLE = "unavailable"  # 69: a device is not there yet: retried slowly (parole)
    CRASH = "crash"  # anything else, signals included: restart with backoff


def classify_exit(returncode: int) -> ExitClass:
    """Classify a ``Popen.returncode`` (negative values are signals)."""
    if returncode == ExitCode.OK:
        return ExitClass.NORMAL
    if returncode in (ExitCode.CONFIG, ExitCode.USAGE, ExitCode.REFUSED):
        return ExitClass.CONFIG
    if returncode == ExitCode.UNAVAILABLE:
        return ExitClass.UNAVAILABLE
    return ExitClass.CRASH


def describe_exit(returncode: int) -> str:
    """``exit 70`` or ``signal SIGKILL`` for people."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Equal-jitter exponential backoff: ``min(cap, base * 2**attempt) * U(0.5, 1.0)``."""
    top: float = min(cap_s, base_s * float(2 ** min(attempt, 30)))
    return top * rng.uniform(0.5, 1.0)


class RestartWindow:
    """OTP-style restart intensity: more than ``intensity`` restarts in ``period_s`` is too many."""

    def __init__(self, intensity: int, period_s: float) -> None:
        self.intensity = intensity
        self.period_s = period_s
        self._times: collections.deque[float] = collections.deque()

    def add(self, now: float) -> bool:
        """Record a restart at ``now``; True if the window is now exceeded."""
        self._times.append(now)
        while self._times and now - self._times[0] > self.period_s:
            self._times.popleft()
        return len(self._times) > self.intensity

    def recent(self, now: float) -> int:
        """Restarts inside the window ending at ``now``."""
        return sum(1 for t in self._times if now - t <= self.period_s)
