"""The heartbeat of an actor process: health, counters and liveness to the supervisor.

Every ``heartbeat_interval_s`` the bridge sends ``hb`` with the node's health, its counters and
whether a pykka actor thread stopped answering pings (:class:`ActorWatch`). It also watches
the other way: a supervisor silent for ``_orphan_s`` means this process is orphaned, and it
exits. A beat that comes a second or more late means the whole process stood still (a paused
VM, a starved CPU): every watchdog clock restarts instead of blaming anyone for the gap.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import zmq

from concierge.runtime import envelope
from concierge.runtime.node import Health
from concierge.runtime.watchdog import ActorWatch
from concierge.runtime.watermark import Watermark

if TYPE_CHECKING:
    from concierge.runtime.bridge import Bridge

log = logging.getLogger("concierge.runtime.bridge")
#: a heartbeat this much later than due means the whole process stood still
_STALL_S = 1.0


class Heartbeat:
    """Sends heartbeats and watches the supervisor's silence (bridge thread only)."""

    def __init__(
        self,
        bridge: Bridge,
        control: zmq.Socket[bytes],
        welcome: Mapping[str, Any],
        counters: Counter[str],
    ) -> None:
        self._bridge = bridge
        self._control = control
        self._counters = counters
        self._interval = float(welcome.get("heartbeat_interval_s", 0.5))
        self._orphan_s = max(3.0, 6 * self._interval)
        self.watch = ActorWatch(float(welcome.get("actor_unresponsive_s", 3.0)))
        self.health: tuple[Health, str] = ("ok", "")
        self._last_supervisor = self._last_beat = bridge.clock.monotonic()
        #: the process's memory watermarks, when the bridge has them (runtime/watermark.py)
        self.watermark: Watermark | None = None

    def heard_supervisor(self) -> None:
        """The supervisor spoke: it is alive."""
        self._last_supervisor = self._bridge.clock.monotonic()

    def thread_started(self) -> int:
        """The loop starts on this thread; returns its id. The node's start may have taken
        seconds on a slow guest: the supervisor's silence is measured from now."""
        self._last_supervisor = self._last_beat = self._bridge.clock.monotonic()
        return threading.get_ident()

    def _idle_hold(self) -> str:
        """Why the node must not be stopped as idle now ("" = it may be; see Node.idle_hold)."""
        node = self._bridge.node
        if node is None:
            return ""
        try:
            return str(node.idle_hold())
        except Exception:  # loop boundary: a broken hook keeps the actor running, never stops it
            log.exception("idle_hold failed", extra={"event": "node.callback_failed"})
            return "idle_hold failed"

    def beat(self) -> None:
        """Send one heartbeat and schedule the next (or stop an orphaned process)."""
        bridge = self._bridge
        now = bridge.clock.monotonic()
        late = now - self._last_beat - self._interval
        self._last_beat = now
        if late > _STALL_S:
            # this process did not run either (a paused VM, a starved CPU): the silence of the
            # supervisor and of our own threads is ours to forgive, not evidence against them
            log.warning("heartbeat %.1f s late: watchdog clocks restart", late, extra={"event": "actor.stalled"})
            self._last_supervisor = now
            self.watch.forgive(now)
        if self.watermark is not None and self.watermark.check():
            # over the hard watermark while idle: restart to give the memory back
            log.error(
                "anonymous RSS %d MiB over the hard watermark while idle: restarting",
                self.watermark.rss >> 20,
                extra={"event": "actor.memory_hard"},
            )
            bridge.stop(75)
            return
        stuck = self.watch.check(now)
        if stuck is None:
            log.error("actor thread died", extra={"event": "actor.thread_died"})
            bridge.stop(70)
            return
        status, detail = self.health
        if stuck:
            status, detail = "failing", f"unresponsive actor thread: {', '.join(stuck)}"
        payload = {
            "health": status,
            "detail": detail,
            "stuck": bool(stuck),
            "counters": dict(self._counters),
            "hold": self._idle_hold(),
        }
        bridge.touched(self._control)
        self._control.send_multipart([b"hb", envelope.encode_value(payload)])
        if now - self._last_supervisor > self._orphan_s:
            log.error("supervisor silent, exiting", extra={"event": "actor.orphaned"})
            bridge.stop(75)
            return
        bridge.call_later(self._interval, self.beat)
