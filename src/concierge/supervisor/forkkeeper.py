"""Keeps a fork server while actors are being forked, and retires it when there is none to fork.

The fork server only forks, but the pages that both the supervisor and the running actors
copied after it was forked are its alone (~3 MB on a QGA-only guest whose agent is 25 MB).
With nothing forked for ``FORKSERVER_IDLE_S`` it is closed; the next spawn (a wake-up, a
restart) forks a new one from the supervisor in a few milliseconds. A fork server forked from
the running supervisor inherits only the forking thread, closes every inherited fd, drops the
signal wake-up fd and never touches ZeroMQ (see :mod:`concierge.supervisor.forkserver`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from concierge.supervisor.forkserver import ForkServer

log = logging.getLogger("concierge.supervisor.core")

#: the fork server is retired after this long without a spawn (re-forked on the next one)
FORKSERVER_IDLE_S = 10.0


class ForkServerKeeper:
    """The supervisor's current fork server (None: actors are exec'd, or it is retired)."""

    def __init__(self, current: ForkServer | None, factory: Callable[[], ForkServer] | None, now: float) -> None:
        self.current = current
        self._factory = factory
        self._last_spawn = now

    def get(self) -> ForkServer | None:
        """The fork server to spawn with: a new one if the last was retired (or died) and a
        factory is known; None means exec a fresh interpreter (the fallback)."""
        if self._factory is None or (self.current is not None and self.current.alive()):
            return self.current
        if self.current is not None:
            self.current.close()
        try:
            self.current = self._factory()
        except OSError as err:  # the actor is then exec'd: slower, same behaviour
            log.warning("cannot fork the fork server: %s", err, extra={"event": "supervisor.forkserver_failed"})
            self.current = None
        return self.current

    def spawned(self, now: float) -> None:
        """An actor was just spawned: the idle time counts from now."""
        self._last_spawn = now

    def retire_if_idle(self, now: float, *, starting: bool) -> None:
        """Close the fork server after ``FORKSERVER_IDLE_S`` without a spawn (never while an
        actor is starting: it may be restarted at once)."""
        if self.current is None or self._factory is None or starting:
            return
        if now - self._last_spawn < FORKSERVER_IDLE_S:
            return
        self.current.close()
        self.current = None
        log.info("fork server retired until the next spawn", extra={"event": "supervisor.forkserver_retired"})

    def close(self) -> None:
        """Stop the fork server for good (agent shutdown)."""
        if self.current is not None:
            self.current.close()
            self.current = None
