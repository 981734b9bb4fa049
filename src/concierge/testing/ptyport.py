"""PtyPort: a pty pair standing in for a virtio-serial port in tests.

The agent opens the *slave* through a stable path (a symlink, like ``/dev/virtio-ports/NAME``);
the test is the host and uses the *master*. Closing the master is a host disconnect (the slave
then reports POLLHUP, like a port without a host); :meth:`reconnect` makes a fresh pair behind
the same path (a port that came back); :meth:`unplug` removes the path (hot-unplug).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import time
import tty
from pathlib import Path
from types import TracebackType


class PtyPort:
    """A fake virtio port: ``path`` for the agent, ``read``/``write`` for the host side."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master = -1
        self._slave_keep = -1
        self.buf = b""
        self.reconnect()

    def reconnect(self) -> None:
        """(Re)create the pty pair behind ``path`` (raw mode, so 0xFF and newlines pass)."""
        self.close_host()
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master = master
        self._slave_keep = slave  # keeps the raw termios settings alive
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(os.ttyname(slave))
        self.buf = b""

    def close_host(self) -> None:
        """The host goes away: close the master side."""
        for fd in (self.master, self._slave_keep):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave_keep = -1

    def unplug(self) -> None:
        """Hot-unplug: the host side closes and the device path disappears."""
        self.close_host()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def write(self, data: bytes) -> None:
        """Host -> agent bytes."""
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [], 1.0)
                continue
            view = view[sent:]

    def read_line(self, timeout_s: float = 5.0) -> bytes:
        """The next line the agent wrote (with its ``\\n``)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from the agent; got {self.buf!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.buf += os.read(self.master, 65536)
                except BlockingIOError:
                    continue
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def drain(self, quiet_s: float = 0.2) -> bytes:
        """Everything the agent writes until it stays quiet for ``quiet_s``."""
        data, self.buf = self.buf, b""
        while select.select([self.master], [], [], quiet_s)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        """Remove everything."""
        self.unplug()

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
