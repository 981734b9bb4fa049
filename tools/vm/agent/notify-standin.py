#!/usr/bin/env python3
"""Stand-in for `concierge run` under the packaged Type=notify unit, for testing the unit and
udev plumbing in the guest before the real runtime exists: runs a command (default: the stock
qemu-ga) as a child, sends READY=1 from the main PID, then WATCHDOG=1 every 5 s while the child
lives, and forwards SIGTERM. Standard library only (it runs on the guest's Debian python3).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def notify(message: bytes) -> None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message)


def main() -> int:
    argv = sys.argv[1:] or ["/usr/sbin/qemu-ga"]
    child = subprocess.Popen(argv)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    notify(b"READY=1\nSTATUS=stand-in running " + argv[0].encode())
    while True:
        try:
            return child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            notify(b"WATCHDOG=1")


if __name__ == "__main__":
    sys.exit(main())
