"""Per-actor memory watermarks: shed bulk work before the kernel's OOM killer has to choose.

Every actor process samples its own *anonymous* resident memory (``/proc/self/statm``: resident
minus file-backed pages, so the libraries shared with every other Python process do not count)
on each heartbeat, i.e. every ``heartbeat_interval_s``. Two watermarks, from the configuration
(``agent.memory_soft_mb`` / ``agent.memory_hard_mb``, overridable per actor):

* above the **soft** watermark the actor refuses new *bulk* requests (``agent.memory_bulk_types``,
  glob patterns such as ``file.read``) with the retryable ``BACKPRESSURE`` error, and drops bulk
  casts with a counter, until a sample shows it back under the watermark. Everything else
  (pings, status, small queries) is still served, so the host sees a busy agent, not a dead one;
* above the **hard** watermark *while idle* (no message received for ``agent.memory_idle_s``), memory is not
  coming back (a leak or a fragmented heap): the actor exits with ``EX_TEMPFAIL`` (75) and the
  supervisor restarts it with backoff. An actor busy above the hard watermark keeps refusing
  bulk work and is restarted once it is idle, so no reply in flight is lost.

A burst between two samples can overshoot by what one request allocates; the watermarks bound
the steady state, the systemd unit's ``MemoryHigh`` bounds the burst. Standard library only.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: an actor counts as idle when no request or cast arrived for this long (seconds)
DEFAULT_IDLE_S = 5.0
#: defaults, mirrored by ``AgentSection`` (config/schema.py), documented in concierge.toml(5)
DEFAULT_SOFT_MB = 256
DEFAULT_HARD_MB = 512
DEFAULT_BULK_TYPES = ("file.read", "file.write", "exec.start", "spice.clipboard", "spice.file_xfer_data")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def anonymous_rss() -> int:
    """Resident bytes of this process that are not file-backed (``statm`` resident - shared)."""
    with open("/proc/self/statm", "rb") as statm:
        fields = statm.read().split()
    return (int(fields[1]) - int(fields[2])) * _PAGE


class Watermark:
    """Soft/hard memory watermarks of one actor process (see the module docstring)."""

    def __init__(
        self,
        *,
        soft_bytes: int,
        hard_bytes: int,
        bulk_types: Iterable[str] = DEFAULT_BULK_TYPES,
        idle_s: float = DEFAULT_IDLE_S,
        sample: Callable[[], int] = anonymous_rss,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.soft_bytes = soft_bytes
        self.hard_bytes = hard_bytes
        self.bulk_types = tuple(bulk_types)
        self.idle_s = idle_s
        self._sample = sample
        self._clock = clock
        self._last_message = clock()
        self.rss = 0
        self.shedding = False

    @classmethod
    def from_welcome(cls, welcome: Mapping[str, Any], **kw: Any) -> Watermark:
        """Build from the ``memory`` entry the supervisor puts in an actor's welcome (MB; 0 = off)."""
        cfg = welcome.get("memory") or {}
        return cls(
            soft_bytes=int(cfg.get("soft_mb", DEFAULT_SOFT_MB)) << 20,
            hard_bytes=int(cfg.get("hard_mb", DEFAULT_HARD_MB)) << 20,
            bulk_types=cfg.get("bulk_types", DEFAULT_BULK_TYPES),
            idle_s=float(cfg.get("idle_s", DEFAULT_IDLE_S)),
            **kw,
        )

    def is_bulk(self, msg_type: str) -> bool:
        """Whether ``msg_type`` is bulk work this actor sheds above the soft watermark."""
        return any(fnmatch.fnmatchcase(msg_type, pattern) for pattern in self.bulk_types)

    def refuses(self, msg_type: str) -> bool:
        """Called per delivered message: True when it must be refused (shed) right now."""
        self._last_message = self._clock()
        return self.shedding and self.is_bulk(msg_type)

    def check(self) -> bool:
        """Called per heartbeat: sample, update shedding; True when the actor should restart."""
        try:
            self.rss = self._sample()
        except (OSError, ValueError, IndexError):
            return False  # no /proc: no watermark, never a crash
        self.shedding = 0 < self.soft_bytes <= self.rss
        idle = self._clock() - self._last_message >= self.idle_s
        return idle and 0 < self.hard_bytes <= self.rss
