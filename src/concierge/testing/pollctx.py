"""PollingContext: a FakeContext whose ``watch_fd`` really polls, for tests over real sockets.

A helper thread polls the watched fds and queues the callback on the fake bridge thread; an fd
is not polled again until its callback has run (so level-triggered readiness cannot flood the
bridge). Everything else is :class:`~concierge.testing.context.FakeContext`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from concierge.testing.context import FakeContext


class PollingContext(FakeContext):
    """FakeContext + a real poll loop for ``watch_fd``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._watches: dict[int, tuple[Callable[[int], None], int]] = {}
        self._armed: dict[int, bool] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._closing = False
        self.fd_callbacks = 0
        self._poller = threading.Thread(target=self._poll_loop, name="poll", daemon=True)
        self._poller.start()

    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = 1) -> None:
        """Poll ``fd`` for ``events`` and run ``callback`` on the bridge thread."""
        with self._lock:
            self._watches[fd] = (callback, events)
            self._armed[fd] = True
        self._wake()

    def unwatch_fd(self, fd: int) -> None:
        """Stop polling ``fd``."""
        with self._lock:
            self._watches.pop(fd, None)
            self._armed.pop(fd, None)
        self._wake()

    def watched(self) -> set[int]:
        """The fds being watched (for assertions)."""
        with self._lock:
            return set(self._watches)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _poll_loop(self) -> None:
        while not self._closing:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            with self._lock:
                for fd, (_, events) in self._watches.items():
                    if self._armed.get(fd):
                        poller.register(fd, events)
            for fd, revents in poller.poll(1000):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    entry = self._watches.get(fd)
                    if entry is None or not self._armed.get(fd):
                        continue
                    self._armed[fd] = False
                callback = entry[0]
                self._jobs.put(functools.partial(self._run, fd, callback, revents))

    def _run(self, fd: int, callback: Callable[[int], None], revents: int) -> None:
        self.fd_callbacks += 1
        try:
            callback(revents)
        finally:
            with self._lock:
                if fd in self._watches:
                    self._armed[fd] = True
            self._wake()

    def close(self) -> None:
        """Stop the node, then the poll thread."""
        super().close()
        self._closing = True
        self._wake()
        self._poller.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
