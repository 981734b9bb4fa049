"""Wall-clock get/set as qemu-ga: settimeofday then ``hwclock -w``, or ``hwclock -s`` alone.

The system-clock setter is injectable (tests never step the clock of the machine they run
on). Standard library only; blocking (runs hwclock), so callers use worker threads.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from collections.abc import Callable

from concierge.actors.guestproc import run_guest

UNSUPPORTED = "this feature or command is not currently supported"
_NS = 1_000_000_000


class ClockError(Exception):
    """A set-time failure; ``str()`` is qemu-ga's text."""


def _settime_ns(value: int) -> None:
    time.clock_settime_ns(time.CLOCK_REALTIME, value)


def get_time_ns() -> int:
    """Wall clock, ns since the epoch at µs resolution (as qemu-ga's gettimeofday)."""
    return time.time_ns() // 1000 * 1000


class TimeSetter:
    """Implements guest-set-time."""

    def __init__(
        self,
        hwclock: str = "/sbin/hwclock",
        timeout_s: float = 30.0,
        settime: Callable[[int], None] = _settime_ns,
    ) -> None:
        self.hwclock = hwclock
        self.timeout_s = timeout_s
        self.settime = settime

    def set_time(self, value_ns: int | None) -> None:
        """Set the clock to ``value_ns`` and save it to the RTC, or load it from the RTC."""
        if not os.access(self.hwclock, os.X_OK):
            raise ClockError(UNSUPPORTED)
        if value_ns is not None:
            seconds = value_ns // _NS
            try:
                year = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).year
            except (OverflowError, OSError, ValueError):
                year = 0
            if year < 1970 or year >= 2070:
                raise ClockError("Invalid time")
            micro = value_ns // 1000 * 1000
            try:
                self.settime(micro)
            except OSError as err:
                reason = os.strerror(err.errno or 0)
                raise ClockError(f"Failed to set time to guest: {reason}") from err
        try:
            status = run_guest(
                [self.hwclock, "-w" if value_ns is not None else "-s"],
                timeout_s=self.timeout_s,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise ClockError("child process has terminated abnormally") from None
        except OSError as err:
            reason = os.strerror(err.errno or 0)
            raise ClockError(f"failed to create child process: {reason}") from err
        if status < 0:
            raise ClockError("child process has terminated abnormally")
        if status != 0:
            raise ClockError("hwclock failed to set hardware clock to system time")
