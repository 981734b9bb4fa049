"""PollingFakeContext: a FakeContext whose watched fds really fire (a poll thread drives them).

FakeContext only remembers watched fds; nodes that serve sockets need readiness delivered.
Each ready fd's callback runs on the bridge thread, and the poller waits for it before polling
again, so level-triggered readiness is never delivered twice for the same data.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from typing import Any

from concierge.testing.context import FakeContext


class PollingFakeContext(FakeContext):
    """FakeContext + a thread that polls watched fds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched: dict[int, tuple[Callable[[int], None], int]] = {}
        self._watch_lock = threading.Lock()
        self._stop_poll = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True, name="fake-poller")
        self._poller.start()

    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = select.POLLIN) -> None:
        """Watch ``fd`` for real."""
        with self._watch_lock:
            self._watched[fd] = (callback, events)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        with self._watch_lock:
            self._watched.pop(fd, None)

    def close(self) -> None:
        """Stop polling, then close as FakeContext does."""
        self._stop_poll.set()
        self._poller.join(2)
        super().close()

    def _poll(self) -> None:
        while not self._stop_poll.is_set():
            with self._watch_lock:
                watched = dict(self._watched)
            poller = select.poll()
            for fd, (_, events) in watched.items():
                poller.register(fd, events)
            ready = poller.poll(50) if watched else []
            if not watched:
                self._stop_poll.wait(0.05)
            for fd, revents in ready:
                if revents & select.POLLNVAL:
                    continue
                done = threading.Event()

                def run(fd: int = fd, revents: int = revents, done: threading.Event = done) -> None:
                    try:
                        with self._watch_lock:
                            entry = self._watched.get(fd)
                        if entry is not None:
                            entry[0](revents)
                    finally:
                        done.set()

                self.call_soon(run)
                done.wait(2)
