"""A power request is durable until carried out or answered with an error (issue 15 item 7).

``guest-shutdown`` has no reply on success, so a request lost inside the agent looks to the
host exactly like one that worked. The lifecycle actor records each request here before acting
and clears it once the backend has accepted or refused it; a lifecycle process that dies in
between (SIGKILL, the supervisor's watchdog on a loaded host) leaves the record behind and the
next one carries the request out at start. The record names the boot it belongs to
(``/proc/sys/kernel/random/boot_id``) and expires, so it can never power off a later boot or
act on a request the host has long given up on. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

JOURNAL_NAME = "power-request.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: a recorded request older than this is dropped instead of carried out (the host asked for a
#: shutdown now: ten minutes later, an unexpected power-off would be the surprise)
MAX_AGE_S = 600.0


@dataclass(frozen=True, slots=True)
class PowerRequest:
    """One shutdown the host asked for."""

    mode: str
    delay_s: int
    message: str
    at: float  # wall clock when it was received
    run: str = ""  # which lifecycle run received it (its own requests are not "resumed")


def boot_id(path: str = BOOT_ID) -> str:
    """This boot's id ("" when the kernel does not tell)."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class PowerJournal:
    """``<state_dir>/power-request.json``: written before acting, removed after the verdict."""

    def __init__(self, state_dir: Path | str, boot_id_path: str = BOOT_ID) -> None:
        self.path = Path(state_dir) / JOURNAL_NAME
        self._boot_id_path = boot_id_path

    def record(self, request: PowerRequest) -> None:
        """Persist ``request`` (atomic rename; a torn file reads as nothing pending)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {
            "mode": request.mode,
            "delay_s": request.delay_s,
            "message": request.message,
            "at": request.at,
            "run": request.run,
            "boot_id": boot_id(self._boot_id_path),
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(data).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def pending(self, now: float | None = None) -> PowerRequest | None:
        """The request a previous run left unfinished in this boot, if still fresh."""
        try:
            data = json.loads(self.path.read_bytes())
            request = PowerRequest(
                str(data["mode"]),
                int(data["delay_s"]),
                str(data["message"]),
                float(data["at"]),
                str(data.get("run", "")),
            )
            same_boot = str(data.get("boot_id", "")) == boot_id(self._boot_id_path)
        except (OSError, ValueError, TypeError, KeyError):
            return None
        age = (time.time() if now is None else now) - request.at
        if not same_boot or not 0 <= age <= MAX_AGE_S:
            return None
        return request

    def clear(self) -> None:
        """The request was carried out or refused: nothing is pending any more."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
