"""systemd ``Type=notify`` support: READY/WATCHDOG/STOPPING datagrams to ``$NOTIFY_SOCKET``.

Fifteen lines instead of a dependency. Does nothing when not run by systemd.
"""

from __future__ import annotations

import contextlib
import os
import socket


class SystemdNotifier:
    """Sends sd_notify messages when ``$NOTIFY_SOCKET`` is set."""

    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):
            self.address = "\0" + self.address[1:]
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        own = not pid or pid == str(os.getpid())
        self._watchdog_s = int(usec) / 2e6 if usec.isdigit() and own else 0.0

    def notify(self, *lines: str) -> None:
        """Send one datagram with ``lines``; errors are ignored (systemd may be gone)."""
        if not self.address:
            return
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendto("\n".join(lines).encode(), self.address)

    def watchdog_interval_s(self) -> float:
        """How often to send WATCHDOG=1 (half of WatchdogSec), 0 when disabled."""
        return self._watchdog_s
