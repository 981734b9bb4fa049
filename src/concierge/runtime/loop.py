"""The poll loop under a bridge: fds, ZeroMQ sockets, timers and jobs from other threads.

One thread runs it; other threads hand it work through an eventfd and a queue
(:meth:`PollLoop.submit`). It waits with ``select.poll``, not ``zmq.Poller``: zmq_poll spends
~6 extra syscalls per wake-up checking every ZeroMQ socket's mailbox, on the lane's hot path
too. ZeroMQ sockets are watched through their ZMQ_FD instead (readable when the mailbox has
commands) and drained on ZMQ_EVENTS; a send can consume a pending read signal, so a socket we
sent on is drained again before the loop sleeps (the pattern of pyzmq's own event-loop
integration).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import cast

import zmq

from concierge.clock import Clock, MonotonicClock
from concierge.runtime.timers import Timer, TimerHeap

#: longest sleep of the loop, so a stop or a clock jump is noticed within a second
_MAX_WAIT_MS = 1000
#: an fd whose callback raised this many times in a row is no longer watched (it would spin)
FD_FAILURES_MAX = 100

log = logging.getLogger("concierge.runtime.bridge")


class PollLoop:
    """What a bridge's thread waits on and runs; messaging lives in :class:`Bridge`."""

    def __init__(self, clock: Clock | None, spin_us: float) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self._thread_id = threading.get_ident()
        self._running = True
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._timers = TimerHeap()
        self._poller = select.poll()
        self._fds: dict[int, Callable[[int], None]] = {}
        self._zmq_fds: dict[int, Callable[[], None]] = {}
        self._touched: set[zmq.Socket[bytes]] = set()
        self._drains: dict[zmq.Socket[bytes], Callable[[], None]] = {}
        #: callbacks that raised (the last line of defence: node code handles its own errors)
        self.callback_errors = 0
        self._fd_failures: dict[int, int] = {}
        # spinning: see :meth:`_spin`; never on one CPU (the peer needs it)
        self._spin_until = 0.0
        self._spin_s = spin_us / 1e6 if len(os.sched_getaffinity(0)) > 1 else 0.0
        self._poller.register(self._wake_fd, select.POLLIN)

    # --- services offered to the loop's users (NodeContext) -------------------------------------
    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = select.POLLIN) -> None:
        """Call ``callback(revents)`` when ``fd`` is ready; flags are ``select.POLL*`` both ways."""
        self._fds[fd] = callback
        self._poller.register(fd, events)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        if self._fds.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        """Schedule ``callback`` on the loop thread; cancelling releases it at once."""
        timer = self._timers.new(callback)
        when = self.clock.monotonic() + delay_s
        if self.in_bridge_thread():
            self._timers.push(when, timer)
        else:
            self.submit(lambda: self._timers.push(when, timer))
        return timer

    def timer_count(self) -> int:
        """Entries in the timer heap, cancelled ones not yet compacted included."""
        return len(self._timers)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread soon."""
        self.submit(callback)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the loop thread: now if already there, else queued with a wake-up."""
        if self.in_bridge_thread():
            job()
            return
        self._jobs.put(job)
        os.eventfd_write(self._wake_fd, 1)

    def in_bridge_thread(self) -> bool:
        """True on the loop thread."""
        return threading.get_ident() == self._thread_id

    # --- the loop --------------------------------------------------------------------------------
    def _next_due(self) -> float:
        """When the loop must wake at the latest (subclasses add their own deadlines)."""
        return self._timers.next_due()

    def _run_due(self, now: float) -> None:
        """Run what is due by ``now``."""
        self._timers.run_due(now)

    def _spinning(self) -> bool:
        """True while a spin window is open (subclasses decide when to open one)."""
        return False

    def _loop(self) -> None:
        poller = self._poller
        while self._running:
            events = self._spin() if self._spinning() and self._spin_until > time.monotonic() else None
            if not events:
                timeout_ms = _MAX_WAIT_MS
                due = self._next_due()
                if due != float("inf"):
                    timeout_ms = max(0, min(_MAX_WAIT_MS, int((due - self.clock.monotonic()) * 1000) + 1))
                events = poller.poll(timeout_ms)
            for fd, revents in events:
                try:
                    if fd == self._wake_fd:
                        self._drain_jobs()
                        continue
                    drain = self._zmq_fds.get(fd)
                    if drain is not None:
                        drain()
                        continue
                    callback = self._fds.get(fd)
                    if callback is not None:
                        callback(revents)
                        if self._fd_failures:
                            self._fd_failures.pop(fd, None)
                except Exception:  # noqa: BLE001 - loop boundary: one broken callback never ends the process
                    self._callback_failed(fd)
            try:
                self._run_due(self.clock.monotonic())
                while self._touched:
                    sock = self._touched.pop()
                    self._drains[sock]()
            except Exception:  # noqa: BLE001 - loop boundary, as above (a timer or a drain raised)
                self._callback_failed(None)

    def _spin(self) -> list[tuple[int, int]]:
        """Poll without sleeping until something is ready or the spin window closes. Why: a
        lane reply usually comes within tens of µs, and a thread that slept meanwhile is woken
        by a scheduler round trip (on a VM, an idle vCPU's wake-up) that costs as much again.
        Bounded: at most ``lane_spin_us`` of CPU per lane request sent, and anything else that
        becomes ready ends it."""
        poll = self._poller.poll
        until = self._spin_until
        while time.monotonic() < until:
            events = poll(0)
            if events:
                return events
        return []

    def touched(self, sock: zmq.Socket[bytes]) -> None:
        """We sent on ``sock``: drain it again before the loop sleeps."""
        self._touched.add(sock)

    def _wake(self) -> None:
        os.eventfd_write(self._wake_fd, 1)

    def watch_zmq(self, sock: zmq.Socket[bytes], drain: Callable[[], None]) -> None:
        """Call ``drain`` when ``sock`` may have input (and after each send on it)."""
        fd = cast(int, sock.getsockopt(zmq.FD))
        self._zmq_fds[fd] = drain
        self._drains[sock] = drain
        self._poller.register(fd, select.POLLIN)

    def _drain_jobs(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - loop boundary: the other queued jobs still run
                self._callback_failed(None)

    def _callback_failed(self, fd: int | None) -> None:
        """A callback raised out to the loop. Node code is meant to turn every peer's mistake
        into an error reply or a closed connection itself; this is the last line of defence, so
        that a bug there costs one event, not the actor (and every other peer of it). An fd whose
        callback keeps raising is dropped rather than spun on."""
        self.callback_errors += 1
        log.exception("a loop callback raised (fd %s): the process goes on", fd, extra={"event": "loop.callback_error"})
        if fd is None or fd not in self._fds:
            return
        failures = self._fd_failures[fd] = self._fd_failures.get(fd, 0) + 1
        if failures >= FD_FAILURES_MAX:
            log.error(
                "fd %s failed %d times in a row: no longer watched", fd, failures, extra={"event": "loop.fd_dropped"}
            )
            self._fd_failures.pop(fd, None)
            self.unwatch_fd(fd)

    def _close_loop(self) -> None:
        os.close(self._wake_fd)


def readable(sock: zmq.Socket[bytes]) -> bool:
    """True while a message is waiting (cheaper than ending each drain on a zmq.Again)."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & _Z_IN)


_Z_IN = int(zmq.POLLIN)  # a plain int: zmq's flags are IntFlag members, slow to combine
