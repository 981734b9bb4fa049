"""Optional clock-step detection after resume or a host-side pause / migration (beyond qemu-ga).

Two signals, sampled every ``interval_s`` on a daemon thread:
- *resume*: CLOCK_BOOTTIME - CLOCK_MONOTONIC grew (boottime counts time spent suspended);
- *rtc*: the offset between the RTC (``/sys/class/rtc/rtc0/since_epoch``, which follows the host)
  and CLOCK_REALTIME changed between two samples (a paused or migrated guest's wall clock
  falls behind). Slow NTP drift never trips it: only a jump between consecutive samples does.
The resync cooperates with NTP daemons: ``chronyc makestep`` when chronyd answers, otherwise
the caller's RTC load (``hwclock -s``). Standard library only; never on the actor threads.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the clocks (seconds)."""

    realtime: float
    sleep_offset: float  # CLOCK_BOOTTIME - CLOCK_MONOTONIC
    rtc: float | None  # RTC seconds since the epoch, None without an RTC


def read_rtc(sysfs_root: str = "/sys") -> float | None:
    """The RTC in whole seconds (None when the guest has no RTC)."""
    try:
        return float((Path(sysfs_root) / "class/rtc/rtc0/since_epoch").read_text())
    except (OSError, ValueError):
        return None


def sample_clocks(sysfs_root: str = "/sys") -> Sample:
    """Read the three clocks as close together as possible."""
    mono = time.clock_gettime(time.CLOCK_MONOTONIC)
    boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    real = time.clock_gettime(time.CLOCK_REALTIME)
    return Sample(realtime=real, sleep_offset=boot - mono, rtc=read_rtc(sysfs_root))


def detect(previous: Sample, current: Sample, threshold_s: float) -> tuple[str, float] | None:
    """Return (cause, seconds) when the clock stepped between two samples, else None.

    The RTC has 1 s resolution, so ``threshold_s`` should stay above 1.5 s.
    """
    slept = current.sleep_offset - previous.sleep_offset
    if slept > threshold_s:
        return ("resume", slept)
    if previous.rtc is not None and current.rtc is not None:
        drift = (current.rtc - current.realtime) - (previous.rtc - previous.realtime)
        if abs(drift) > threshold_s:
            return ("rtc", drift)
    return None


def chrony_makestep(timeout_s: float = 10.0) -> bool:
    """Ask chronyd to step now; False when chrony is absent or refuses."""
    chronyc = shutil.which("chronyc")
    if chronyc is None:
        return False
    try:
        done = subprocess.run([chronyc, "-a", "makestep"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class ClockWatch:
    """Samples the clocks and resyncs after a step; ``on_step(cause, seconds, action)``."""

    def __init__(
        self,
        *,
        interval_s: float,
        threshold_s: float,
        resync_from_rtc: Callable[[], None],
        on_step: Callable[[str, float, str], None],
        sample: Callable[[], Sample] = sample_clocks,
        ntp_step: Callable[[], bool] = chrony_makestep,
    ) -> None:
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.resync_from_rtc = resync_from_rtc
        self.on_step = on_step
        self.sample = sample
        self.ntp_step = ntp_step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: Sample | None = None

    def start(self) -> None:
        """Start the sampling thread."""
        self._last = self.sample()
        self._thread = threading.Thread(target=self._loop, name="clock-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (does not wait for a resync in progress)."""
        self._stop.set()

    def check(self) -> tuple[str, float, str] | None:
        """Take one sample; resync and report when the clock stepped."""
        current = self.sample()
        previous, self._last = self._last, current
        if previous is None:
            return None
        step = detect(previous, current, self.threshold_s)
        if step is None:
            return None
        cause, seconds = step
        action = "chronyc"
        if not self.ntp_step():
            action = "hwclock"
            try:
                self.resync_from_rtc()
            except Exception as err:  # thread boundary: report, keep watching
                log.exception("resync from the RTC failed", extra={"event": "time.resync_failed"})
                action = f"failed: {err}"
        self._last = self.sample()  # the resync moved realtime: re-baseline
        log.warning(
            "clock step detected (%s, %.1f s); resync by %s", cause, seconds, action, extra={"event": "time.step"}
        )
        self.on_step(cause, seconds, action)
        return (cause, seconds, action)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()
