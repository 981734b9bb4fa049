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
    """FakeContext + a real poll loop for ``watch_fd``.

    ``flag_style="zmq"`` imitates a bridge that hands the ``events`` mask to a ZeroMQ poller
    unchanged: select's POLLOUT (4) then reads as ZMQ_POLLERR, so POLLOUT is never requested,
    and revents come back in ZeroMQ's encoding (IN=1, OUT=2, anything else=4). Channels must
    work under both encodings.
    """

    def __init__(self, *args: Any, flag_style: str = "select", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flag_style = flag_style
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
                        poller.register(fd, self._requested(events))
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
                self._jobs.put(functools.partial(self._run, fd, callback, self._reported(revents)))

    def _requested(self, events: int) -> int:
        if self.flag_style != "zmq":
            return events
        return select.POLLIN if events & 1 else 0  # zmq: 1=IN, 2=OUT, 4=ERR (never requested)

    def _reported(self, revents: int) -> int:
        if self.flag_style != "zmq":
            return revents
        flags = 1 if revents & select.POLLIN else 0
        flags |= 2 if revents & select.POLLOUT else 0
        if revents & ~(select.POLLIN | select.POLLOUT | select.POLLPRI):
            flags |= 4
        return flags

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
