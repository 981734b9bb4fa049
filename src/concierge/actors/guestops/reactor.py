"""One thread that multiplexes every exec child's pipes and pidfd (no thread per child).

Callbacks run on the reactor thread; other threads hand work over with :meth:`Reactor.submit`.
Must not import pykka or zmq.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

FdCallback = Callable[[int], None]


class Reactor:
    """A selector loop on a daemon thread with a self-pipe for wake-ups."""

    def __init__(self, name: str) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the reactor thread soon (thread-safe); dropped once stopped."""
        if self._closed:
            return
        self._jobs.put(job)
        with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is already pending
            os.write(self._wake_w, b"\0")

    def add(self, fd: int, events: int, callback: FdCallback) -> None:
        """Watch ``fd`` (reactor thread only)."""
        self._sel.register(fd, events, callback)

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (reactor thread only); unknown fds are ignored."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(fd)

    def in_thread(self) -> bool:
        """True on the reactor thread."""
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        """Stop the loop and wait briefly for the thread."""

        def halt() -> None:
            self._stopping = True

        if self._closed:
            return
        self.submit(halt)
        if self.in_thread():
            return
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _loop(self) -> None:
        while not self._stopping:
            for key, mask in self._sel.select():
                try:
                    if key.data is None:
                        self._drain()
                    else:
                        key.data(mask)
                except Exception:  # loop boundary: one bad child must not stop the reactor
                    log.exception("exec reactor callback failed", extra={"event": "guestops.exec.reactor_error"})
        self._sel.close()

    def _drain(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            job()
