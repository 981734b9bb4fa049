"""The supervisor's side of the control plane: one ROUTER, one DEALER per actor process.

Handshake (hello -> welcome with the resolved config -> ready), heartbeats (health,
counters, idle hold, stuck actor threads), notes (the lifecycle's freeze state) and ``want``
(a request went to an actor without a lane: start it if it is dormant). Decisions about
processes stay in :mod:`concierge.supervisor.core`; this module only reads and answers.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import zmq

from concierge.config.schema import memory_limits
from concierge.errors import ProtocolError
from concierge.runtime import envelope, sockets
from concierge.supervisor import dormancy
from concierge.supervisor.state import State

if TYPE_CHECKING:
    from concierge.supervisor.children import Child
    from concierge.supervisor.core import Supervisor

log = logging.getLogger("concierge.supervisor.core")


class ActorPlane:
    """Reads every actor's control messages and applies them to the supervisor's records."""

    def __init__(self, supervisor: Supervisor, zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.sup = supervisor
        self.sock = sockets.router(zctx, supervisor.layout.url(supervisor.layout.control))

    def send(self, actor_id: str, verb: bytes, payload: bytes = b"") -> None:
        """Send one control message; an actor not connected (yet or any more) is skipped:
        the pidfd and timeout paths deal with it."""
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send_multipart([actor_id.encode(), verb, payload], zmq.NOBLOCK)

    def drain(self) -> None:
        """Handle every pending control message."""
        sup = self.sup
        while True:
            try:
                rid, verb, *rest = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            child = sup.children.get(rid.decode(errors="replace"))
            if child is None or child.pid == 0:
                continue
            try:
                payload = envelope.decode_value(rest[0]) if rest and rest[0] else {}
            except ProtocolError:
                continue
            now = sup.clock.monotonic()
            child.last_hb = now
            if verb == b"hello":
                if isinstance(payload, dict) and payload.get("pid") != child.pid:
                    log.warning("hello from a stale process for %s", child.id, extra={"event": "actor.stale_hello"})
                    continue
                self.send(child.id, b"welcome", envelope.encode_value(self._welcome(child)))
            elif verb == b"ready":
                self._on_ready(child, now)
            elif verb == b"hb" and isinstance(payload, dict):
                child.health = str(payload.get("health", "unknown"))
                child.detail = str(payload.get("detail", ""))
                child.counters = dict(payload.get("counters", {}))
                child.idle.observe(child.counters, str(payload.get("hold", "")), now)
                self.send(child.id, b"ack")
                if payload.get("stuck") and child.state == State.RUNNING and not sup.frozen():
                    sup.kill_child(child, child.detail or "watchdog: unresponsive actor thread")
            elif verb == b"note" and isinstance(payload, dict):
                self._on_note(payload)
            elif verb == b"want":
                self._on_want(child, payload)

    def _on_ready(self, child: Child, now: float) -> None:
        if child.state != State.STARTING:
            return
        child.set_state(State.RUNNING)
        child.running_since = now
        child.health = "ok"
        child.idle.reset(now)
        self.sup.ctl.notify_waiters(child)
        if self.sup.frozen():
            self.send(child.id, b"frozen", b"1")

    def _welcome(self, child: Child) -> dict[str, Any]:
        sup = self.sup
        agent = sup.config.agent
        return {
            "id": child.id,
            "entry": child.spec.entry,
            "settings": child.settings,
            "agent": {"state_dir": agent.state_dir or str(sup.layout.state), "input_sink": agent.input_sink},
            "heartbeat_interval_s": agent.heartbeat_interval_s,
            "actor_unresponsive_s": agent.actor_unresponsive_s,
            "lane_spin_us": agent.lane_spin_us,
            "log_format": agent.log_format,
            "log_level": agent.log_level,
            "memory": memory_limits(agent, child.spec),
        }

    def _on_note(self, note: dict[str, Any]) -> None:
        sup = self.sup
        if note.get("type") == "freeze.state":
            body = note.get("body") or {}
            frozen = bool(body.get("frozen"))
            deadline = float(body.get("deadline_s", 600.0))
            sup.frozen_until = sup.clock.monotonic() + deadline if frozen else 0.0
            log.info("filesystems %s", "frozen" if frozen else "thawed", extra={"event": "agent.freeze_state"})
            if sup.log_handler is not None:
                sup.log_handler.set_frozen(frozen)
            for other in sup.children.values():
                if other.pid:
                    self.send(other.id, b"frozen", b"1" if frozen else b"0")

    def _on_want(self, asker: Child, target_id: Any) -> None:
        """``asker`` sent a request to an actor without a lane: start it if it is dormant."""
        sup = self.sup
        target = sup.children.get(str(target_id))
        if target is None or sup.stopping_all():
            return
        if target.state == State.STOPPING and target.idle_stopping:
            target.restart_pending = True  # asked for while stopping as idle: back at once
            target.idle_stopping = False
            return
        if not dormancy.wakeable(target.spec, target.state, target.dormant_reason):
            return
        log.info("waking %s for %s", target.id, asker.id, extra={"event": "actor.wake", "by": asker.id})
        target.attempt = 0
        target.wakes += 1
        target.wanted = True  # while frozen, start_child defers it to BACKOFF: started at thaw
        sup.start_child(target)

    def close(self) -> None:
        """Close the ROUTER."""
        self.sock.close(0)
