"""Liveness of a process's pykka actor threads, reported with each heartbeat.

Why ping every actor each tick: a deadlocked actor thread leaves the process (and its bridge)
running and heart-beating; only an unanswered ping shows the supervisor that it must restart it.
"""

from __future__ import annotations

from typing import Any

import pykka


class ActorWatch:
    """Pings each registered pykka actor once per heartbeat (bridge thread only)."""

    __slots__ = ("_last_pong", "_pings", "_unresponsive_s", "actors")

    def __init__(self, unresponsive_s: float) -> None:
        self._unresponsive_s = unresponsive_s
        self.actors: list[pykka.ActorRef[Any]] = []
        self._pings: dict[int, tuple[_DoneFuture, float]] = {}
        self._last_pong: dict[int, float] = {}

    def register(self, ref: pykka.ActorRef[Any], now: float) -> None:
        """Watch ``ref`` from ``now`` on."""
        self.actors.append(ref)
        self._last_pong[id(ref)] = now

    def forgive(self, now: float) -> None:
        """The whole process stood still: restart every clock instead of blaming the actors."""
        self._pings.clear()
        for key in self._last_pong:
            self._last_pong[key] = now

    def check(self, now: float) -> list[str] | None:
        """Ping the actors; the names of those silent too long, or None if a thread died."""
        stuck = []
        for ref in self.actors:
            key = id(ref)
            if not ref.is_alive():
                return None
            pending = self._pings.get(key)
            if pending is not None and pending[0].done():
                self._last_pong[key] = pending[1]
                pending = None
            if pending is None:
                self._pings[key] = (_DoneFuture(ref.ask("ping", block=False)), now)
            if now - self._last_pong.get(key, now) > self._unresponsive_s:
                stuck.append(ref.actor_class.__name__)
        return stuck

    def stop_all(self) -> None:
        """Stop the actors, last registered first."""
        for ref in reversed(self.actors):
            if ref.is_alive():
                ref.stop(block=True, timeout=2.0)


class _DoneFuture:
    """Adapter: pykka futures have no ``done()``; poll with a zero timeout."""

    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def done(self) -> bool:
        try:
            self._future.get(timeout=0)
        except pykka.Timeout:
            return False
        except Exception:  # noqa: BLE001 - an actor that answered with an error is still alive
            return True
        return True
