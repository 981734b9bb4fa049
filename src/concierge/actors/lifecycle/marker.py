"""The frozen marker: a small JSON file written (and fsynced) before the first FIFREEZE.

It lists every mountpoint the freeze may touch, so a lifecycle process started after a crash
or a SIGKILL knows exactly what to thaw. The state dir should be on tmpfs (``/run``): a reboot
thaws everything anyway. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

MARKER_NAME = "frozen.json"


@dataclass(frozen=True, slots=True)
class MarkerContent:
    """What a previous run had (possibly) frozen."""

    mountpoints: list[str]
    pid: int
    frozen_at: float  # wall clock, for the log line only


class FreezeMarker:
    """Reads, writes and removes ``<state_dir>/frozen.json`` atomically."""

    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / MARKER_NAME

    def write(self, mountpoints: list[str]) -> None:
        """Record the planned freeze; durable before this returns."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps(
            {"mountpoints": mountpoints, "pid": os.getpid(), "frozen_at": time.time()}
        ).encode()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def read(self) -> MarkerContent | None:
        """The marker left behind, or None. A corrupt marker still means "thaw": it yields an
        empty list and the caller falls back to thawing every candidate filesystem."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            points = [str(p) for p in data.get("mountpoints", [])]
            return MarkerContent(points, int(data.get("pid", 0)), float(data.get("frozen_at", 0)))
        except (ValueError, TypeError, AttributeError):
            return MarkerContent([], 0, 0.0)

    def remove(self) -> None:
        """Delete the marker (after a complete thaw)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
