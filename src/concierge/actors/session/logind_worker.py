"""The gateway's logind traffic, off the bridge thread: one worker for round trips, one for signals.

D-Bus round trips can block for seconds, and the bridge loop serves every user, so each query
runs on a single worker thread and its result comes back to the bridge with ``call_soon``; a
second thread waits for logind signals and only asks the worker to re-read (the periodic poll is
the fallback when signals are lost or logind restarts). Must not import zmq.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from concierge.actors.session.logind import Logind, SessionInfo
from concierge.errors import UnavailableError
from concierge.runtime.node import NodeContext

log = logging.getLogger(__name__)

#: (active session id, sessions by id, uids that have a session), or None without logind
PollResult = tuple[str, dict[str, SessionInfo], set[int]] | None
PollCallback = Callable[[PollResult], None]
#: (connection key, the process's session or None, whether logind answered)
SessionCallback = Callable[[int, SessionInfo | None, bool], None]


class LogindWorker:
    """Runs logind queries on a worker thread and hands the answers to bridge callbacks."""

    def __init__(
        self, ctx: NodeContext, bus: str, poll_s: float, on_poll: PollCallback, on_session: SessionCallback
    ) -> None:
        self.ctx = ctx
        self.bus = bus
        self.poll_s = poll_s
        self._on_poll = on_poll
        self._on_session = on_session
        self._pool: ThreadPoolExecutor | None = None
        self._logind: Logind | None = None
        self._signals: Logind | None = None
        self._stop_event = threading.Event()

    def start(self) -> None:
        """Start the worker (and the signal thread when a bus is configured)."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-logind")
        if self.bus:
            threading.Thread(target=self._watch, name="session-logind-watch", daemon=True).start()

    def stop(self) -> None:
        """Drop queued queries and wake the signal thread so it exits."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._stop_event.set()
        if self._signals is not None:
            self._signals.close()

    def poll(self) -> None:
        """Re-read the sessions (answer: ``on_poll``)."""
        if self._pool is not None:
            self._pool.submit(self._poll)

    def lookup(self, key: int, pid: int, uid: int) -> None:
        """Find the session of ``pid`` (answer: ``on_session``)."""
        if self._pool is not None:
            self._pool.submit(self._lookup, key, pid, uid)

    # --- worker thread -------------------------------------------------------------------------
    def _client(self) -> Logind | None:
        if self._logind is None and self.bus:
            try:
                self._logind = Logind(self.bus)
            except UnavailableError:
                return None
        return self._logind

    def _watch(self) -> None:
        """Signal thread: any logind signal re-reads logind at once (the poll is the fallback)."""
        stop = self._stop_event
        while not stop.is_set():
            try:
                self._signals = Logind(self.bus)
                self._signals.watch()
                while not stop.is_set():
                    self._signals.wait_signal()
                    if not stop.is_set():
                        self.poll()
            except (UnavailableError, OSError, ValueError, TimeoutError, RuntimeError):
                # logind absent or restarting (the poll covers it), or we are stopping
                stop.wait(self.poll_s)

    def _poll(self) -> None:
        client = self._client()
        result: PollResult = None
        if client is not None:
            try:
                sessions = {s[0]: client.info(s[2]) for s in client.sessions()}
                result = (client.active_session(), sessions, {s.uid for s in sessions.values()})
            except UnavailableError as err:
                log.info("logind unavailable: %s", err, extra={"event": "session.logind_down"})
                self._logind = None
        self.ctx.call_soon(lambda: self._on_poll(result))

    def _lookup(self, key: int, pid: int, uid: int) -> None:
        client = self._client()
        info: SessionInfo | None = None
        if client is not None:
            try:
                info = client.session_of(pid, uid)
            except UnavailableError:
                info = None
        self.ctx.call_soon(lambda: self._on_session(key, info, client is not None))
