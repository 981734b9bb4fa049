"""PollingFakeContext: a FakeContext whose ``watch_fd`` really polls, for tests with real sockets.

FakeContext only fires fds on request; nodes that own sockets (the session gateway, a test
transport link) need their callbacks driven by readiness. A poller thread waits on the watched
fds and runs each ready callback on the fake bridge thread, waiting for it before polling again
(level-triggered fds would otherwise fire repeatedly). Test support only.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import Any

from concierge.testing.context import FakeContext


class PollingFakeContext(FakeContext):
    """FakeContext + a poll(2) thread feeding ready fds to the bridge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch: dict[int, tuple[Callable[[int], None], int]] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._poller = threading.Thread(target=self._poll_loop, name=f"{self.actor_id}-poll", daemon=True)
        self._poller.start()

    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = select.POLLIN) -> None:
        """Watch ``fd`` for real (replaces an earlier watch of the same fd)."""
        with self._lock:
            self._watch[fd] = (callback, events)
        os.write(self._wake_w, b"x")

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        with self._lock:
            self._watch.pop(fd, None)
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Stop the poller (while the bridge still runs its last job), then the node and bridge."""
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._poller.join(timeout=5)
        super().close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run_ready(self, fd: int, callback: Callable[[int], None], revents: int) -> None:
        done = threading.Event()

        def job() -> None:
            try:
                with self._lock:
                    current = self._watch.get(fd)
                if current is not None and current[0] is callback:
                    callback(revents)
            finally:
                done.set()

        self.call_soon(job)
        done.wait(5)

    def _poll_loop(self) -> None:
        while not self._stopping:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            with self._lock:
                watch = dict(self._watch)
            for fd, (_, events) in watch.items():
                poller.register(fd, events)
            try:
                ready = poller.poll(500)
            except (OSError, ValueError):
                continue
            for fd, revents in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                elif (entry := watch.get(fd)) is not None:
                    self._run_ready(fd, entry[0], revents)
