"""The bridge: the one I/O thread of an actor process, and the real :class:`NodeContext`.

It owns every socket and watched fd of the process (the control DEALER, the inbox ROUTER,
outbound DEALERs, the event SUB, the lane, node fds) and runs one poll loop over them
(:mod:`~concierge.runtime.loop`). Other threads never touch a ZeroMQ socket: they encode in
their own thread and queue frames here. A request or reply that fits one datagram goes on the
lane (:mod:`~concierge.runtime.lanes`); anything else, and whatever the kernel refuses, takes
ZeroMQ, which queues for an absent peer. Replies need no route: they go to the requester's lane
or inbox. Casts keep ZeroMQ's per-peer order, except the lossy ``input`` lane. Requests in
flight: :mod:`~concierge.runtime.inflight`; heartbeat: :mod:`~concierge.runtime.heartbeat`.
Must not import ``concierge.supervisor``.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pykka
import zmq

from concierge.clock import Clock
from concierge.errors import ErrorCode, ProtocolError
from concierge.runtime import envelope, sockets
from concierge.runtime.endpoints import RuntimeLayout
from concierge.runtime.events import EventPlane
from concierge.runtime.heartbeat import Heartbeat
from concierge.runtime.inflight import FOR_SUCCESSOR, InFlight, reply_of
from concierge.runtime.lanes import LANE_MAX, LaneOut, bind_lane, close_fds, recv_lane
from concierge.runtime.loop import PollLoop, readable
from concierge.runtime.node import Health, Incoming, Kind, Lane, Node, Reply
from concierge.runtime.replyport import BridgeReplyPort
from concierge.runtime.wakeups import WakeRequests
from concierge.runtime.watermark import Watermark

__all__ = ["LANE_MAX", "Bridge"]

log = logging.getLogger(__name__)

Frames = list[bytes]


class Bridge(PollLoop):
    """Per-process runtime: routing, deadlines, heartbeats over a poll loop (a NodeContext)."""

    def __init__(
        self,
        *,
        actor_id: str,
        layout: RuntimeLayout,
        welcome: Mapping[str, Any],
        zctx: zmq.Context[zmq.Socket[bytes]],
        control: zmq.Socket[bytes],
        clock: Clock | None = None,
        on_frozen: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(clock, float(welcome.get("lane_spin_us", 50)))
        self.actor_id = actor_id
        self.settings: Mapping[str, Any] = welcome.get("settings", {})
        self.agent: Mapping[str, Any] = welcome.get("agent", {})
        self.runtime_dir: Path = layout.root
        self.layout = layout
        self.node: Node | None = None
        self.exit_code = 0
        self.zctx = zctx
        self._control = control
        self._on_frozen = on_frozen
        self._ids = itertools.count(1)
        self._counters: Counter[str] = Counter()
        self._inflight = InFlight(self._counters)
        self._lanes = LaneOut(layout.lane, self._counters, self._on_lane_dead)
        self._dealers: dict[tuple[str, Lane], zmq.Socket[bytes]] = {}
        self._inbox = sockets.router(zctx, layout.url(layout.inbox(actor_id)))
        self._events = EventPlane(self)
        self._lane_in: socket.socket | None = None
        self._heartbeat = Heartbeat(self, control, welcome, self._counters)
        self._wakeups = WakeRequests(self._send_want)
        self._watermark = Watermark.from_welcome(welcome, clock=self.clock.monotonic)
        self._heartbeat.watermark = self._watermark
        self.watch_zmq(self._control, self._drain_control)
        self.watch_zmq(self._inbox, self._drain_inbox)

    # --- NodeContext: messaging ------------------------------------------------------------------
    def request(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        timeout_s: float,
        on_reply: Callable[[Reply], None],
        blobs: tuple[bytes, ...] = (),
    ) -> None:
        """Send a request; ``on_reply`` runs on the bridge thread (TIMEOUT included)."""
        msg_id = next(self._ids)
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        header = envelope.Header("req", type, msg_id, 0, self.actor_id, dst, deadline_ns)
        datagram = b"" if blobs else envelope.encode_datagram(header, body)

        def send() -> None:
            expires = self.clock.monotonic() + timeout_s
            sock, refused = self._lanes.send_or_why(dst, datagram) if datagram else (None, False)
            via = sock if sock is not None else FOR_SUCCESSOR if refused else None
            self._inflight.add(msg_id, on_reply, expires=expires, dst=dst, type=type, sock=via)
            if sock is not None:
                self._spin_until = time.monotonic() + self._spin_s
                return
            if refused or (not datagram and not self._lanes.connected(dst)):
                self._wakeups.want(dst)  # it may be dormant: ask the supervisor to start it
            frames = envelope.encode(header, body, blobs)
            if not self._send_dealer(dst, "default", frames):
                self._inflight.finish(
                    msg_id, Reply(False, code=ErrorCode.BACKPRESSURE, message=f"{dst} is not accepting requests")
                )

        if self.in_bridge_thread():
            send()
        else:
            self.submit(send)

    def call(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        timeout_s: float,
        blobs: tuple[bytes, ...] = (),
    ) -> Reply:
        """Blocking request for worker and actor threads."""
        if self.in_bridge_thread():
            raise RuntimeError("call() would deadlock the bridge thread; use request()")
        future: Future[Reply] = Future()
        self.request(dst, type, body, timeout_s=timeout_s, on_reply=future.set_result, blobs=blobs)
        return future.result(timeout=timeout_s + 5.0)

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        lane: Lane = "default",
        ttl_s: float = 5.0,
    ) -> None:
        """One-way message with a time to live."""
        deadline_ns = time.monotonic_ns() + int(ttl_s * 1e9)
        header = envelope.Header("cast", type, next(self._ids), 0, self.actor_id, dst, deadline_ns)
        if lane == "input" and not blobs:
            # thread-safe: one sendto, no socket state shared. Dropped (and counted) when the
            # peer is absent or behind: a late mouse state is worse than none.
            if self._lanes.send(dst, envelope.encode_datagram(header, body)) is None:
                self._counters["cast.dropped"] += 1
            return
        frames = envelope.encode(header, body, blobs)
        if self.in_bridge_thread():
            if not self._send_dealer(dst, lane, frames):
                self._counters["cast.dropped"] += 1
        else:
            self.submit(lambda: self.cast_frames(dst, lane, frames))

    def send_fds(self, dst: str, type: str, body: Any, fds: tuple[int, ...], *, ttl_s: float = 5.0) -> bool:
        """A cast carrying open descriptors (SCM_RIGHTS) on ``dst``'s lane, from any thread;
        False when the peer is absent or behind (nothing is queued: the caller retries)."""
        deadline_ns = time.monotonic_ns() + int(ttl_s * 1e9)
        header = envelope.Header("cast", type, next(self._ids), 0, self.actor_id, dst, deadline_ns)
        return self._lanes.send_or_why(dst, envelope.encode_datagram(header, body), fds)[0] is not None

    def lane_send(self, dst: str, datagram: bytes) -> bool:
        """Send one datagram to ``dst``'s lane, from any thread; False when it is too big or
        the kernel refuses it (peer absent, queue full)."""
        return self._lanes.send(dst, datagram) is not None

    def cast_frames(self, dst: str, lane: Lane, frames: Frames) -> None:
        """Send pre-encoded cast frames (bridge thread)."""
        if not self._send_dealer(dst, lane, frames):
            self._counters["cast.dropped"] += 1

    def publish(self, topic: str, body: Any = None) -> None:
        """Send an event to the proxy (lossy)."""
        self._events.publish(topic, body)

    def subscribe(self, topic: str) -> None:
        """Receive events whose topic starts with ``topic``."""
        self._events.subscribe(topic)

    # --- NodeContext: process services -----------------------------------------------------------
    def set_health(self, status: Health, detail: str = "") -> None:
        """Report functional health in the next heartbeat."""
        self._heartbeat.health = (status, detail)

    def count(self, name: str, n: int = 1) -> None:
        """Bump a counter (shown by ``concierge metrics``)."""
        self._counters[name] += n

    def notify_supervisor(self, type: str, body: Any = None) -> None:
        """Send a note to the supervisor over the control plane."""
        payload = envelope.encode_value({"type": type, "body": body})

        def send() -> None:
            self._touched.add(self._control)
            self._control.send_multipart([b"note", payload])

        self.submit(send)

    def register_actor(self, ref: pykka.ActorRef[Any]) -> None:
        """Watch a pykka actor's liveness and stop it with the process."""
        self._heartbeat.watch.register(ref, self.clock.monotonic())

    def stop(self, code: int = 0) -> None:
        """Leave the loop; the runner stops the node and exits with ``code``."""
        self.exit_code = code
        self._running = False
        self._wake()

    # --- the loop --------------------------------------------------------------------------------
    def open_lanes(self) -> None:
        """Bind this process's lane (before Ready, so no datagram is lost)."""
        if self._lane_in is None:
            self._lane_in = bind_lane(self.layout.lane(self.actor_id))
            self.watch_fd(self._lane_in.fileno(), self._drain_lane)

    def run(self) -> int:
        """Poll until stopped; returns the process exit code."""
        self._thread_id = self._heartbeat.thread_started()
        self.open_lanes()
        self.call_later(0.0, self._heartbeat.beat)
        self._loop()
        return self.exit_code

    def _spinning(self) -> bool:
        return self._inflight.lane_waiting > 0

    def _next_due(self) -> float:
        return min(self._timers.next_due(), self._inflight.next_expiry)

    def _run_due(self, now: float) -> None:
        if now >= self._inflight.next_expiry:
            self._inflight.expire(now)
        self._timers.run_due(now)

    # --- receiving -------------------------------------------------------------------------------
    def _drain_lane(self, _revents: int) -> None:
        """Take one datagram per wake-up: poll is level-triggered and reports the next at once,
        and a drain loop would end on an EAGAIN recv, a syscall (~5 µs on a small guest) spent
        on every request of a request/reply exchange. Descriptors that came with it
        (SCM_RIGHTS) are closed once the node has had it: a node keeps one by ``os.dup``."""
        assert self._lane_in is not None
        try:
            got = recv_lane(self._lane_in, self._counters)
        except BlockingIOError:
            return
        if got is not None:
            try:
                self._take_datagram(*got)
            finally:
                close_fds(got[1])

    def _take_datagram(self, data: bytes, fds: tuple[int, ...]) -> None:
        counters = self._counters
        counters.update(("msg.in", "lane.in"))
        try:
            header, body = envelope.decode_datagram(data)
        except ProtocolError:
            counters["msg.malformed"] += 1
            return
        kind = header.kind
        if kind in {"rep", "err"}:
            self._inflight.finish(header.corr, reply_of(header, body, ()))
            return
        if header.deadline_ns and header.deadline_ns < time.monotonic_ns():
            counters["msg.expired"] += 1
            return
        if kind == "req":
            port = BridgeReplyPort(self, header)
            self.deliver(Incoming("req", header.type, body, header.src, header.id, header.deadline_ns, (), port, fds))
        else:
            self.deliver(Incoming("cast", header.type, body, header.src, header.id, header.deadline_ns, fds=fds))

    def _drain_inbox(self) -> None:
        while readable(self._inbox):  # no exception per drain
            frames = self._inbox.recv_multipart(zmq.NOBLOCK)
            self._counters["msg.in"] += 1
            route, rest = frames[0], frames[1:]
            try:
                header, body, blobs = envelope.decode(rest)
            except ProtocolError:
                self._counters["msg.malformed"] += 1
                continue
            if header.kind in {"rep", "err"}:  # the answer to a lane request
                self._inflight.finish(header.corr, reply_of(header, body, blobs))
                continue
            if header.deadline_ns and header.deadline_ns < time.monotonic_ns():
                self._counters["msg.expired"] += 1
                continue
            reply = BridgeReplyPort(self, header, route) if header.kind == "req" else None
            kind: Kind = "req" if header.kind == "req" else "cast"
            self.deliver(Incoming(kind, header.type, body, header.src, header.id, header.deadline_ns, blobs, reply))

    def _drain_dealer(self, sock: zmq.Socket[bytes]) -> None:
        while readable(sock):  # no exception per drain
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                header, body, blobs = envelope.decode(frames)
            except ProtocolError:
                self._counters["msg.malformed"] += 1
                continue
            if header.kind in {"rep", "err"}:
                self._inflight.finish(header.corr, reply_of(header, body, blobs))

    def deliver(self, msg: Incoming) -> None:
        """Hand ``msg`` to the node (bridge thread); a node bug answers INTERNAL."""
        node = self.node
        if node is None or (node.accepts is not None and msg.type not in node.accepts):
            self._counters["msg.unknown_type"] += 1
            if msg.reply is not None:
                msg.reply.error(ErrorCode.UNKNOWN_TYPE, f"{self.actor_id} does not handle {msg.type}")
            return
        if self._watermark.refuses(msg.type):
            self._counters["memory.shed"] += 1
            if msg.reply is not None:
                msg.reply.error(ErrorCode.BACKPRESSURE, f"{self.actor_id} is over its memory watermark", retryable=True)
            return
        try:
            node.handle(msg)
        except Exception as err:  # loop boundary: a node bug answers INTERNAL, the loop lives on
            log.exception("node failed on %s", msg.type, extra={"event": "node.handle_failed"})
            self._counters["node.errors"] += 1
            if msg.reply is not None:
                msg.reply.error(ErrorCode.INTERNAL, f"{msg.type} failed: {type(err).__name__}")

    # --- sending through ZeroMQ ------------------------------------------------------------------
    def send_inbox(self, frames: Frames) -> None:
        """Send a reply through the inbox ROUTER (the requester may have gone: counted)."""
        self._touched.add(self._inbox)
        try:
            self._inbox.send_multipart(frames, zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            self._counters["reply.undeliverable"] += 1

    def _send_dealer(self, dst: str, lane: Lane, frames: Frames) -> bool:
        sock = self._dealers.get((dst, lane))
        if sock is None:
            url = self.layout.url(self.layout.inbox(dst))
            ident = self.actor_id if lane == "default" else f"{self.actor_id}/{lane}"
            sock = sockets.dealer(self.zctx, url, ident, immediate=lane == "input")
            self._dealers[(dst, lane)] = sock
            self.watch_zmq(sock, lambda: self._drain_dealer(sock))
        self._touched.add(sock)
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=len(frames) <= 3)
        except zmq.Again:
            return False
        self._counters["msg.out"] += 1
        return True

    # --- control plane and peer deaths -----------------------------------------------------------
    def _drain_control(self) -> None:
        while readable(self._control):  # no exception per drain
            verb, *rest = self._control.recv_multipart(zmq.NOBLOCK)
            self._heartbeat.heard_supervisor()
            if verb == b"stop":
                log.info("stop requested", extra={"event": "actor.stopping"})
                self.stop(0)
            elif verb == b"frozen" and rest and self._on_frozen is not None:
                self._on_frozen(rest[0] == b"1")
            elif verb == b"down" and rest:
                self._peer_down(rest[0].decode(errors="replace"))

    def _send_want(self, dst: str) -> None:
        self.touched(self._control)
        self._control.send_multipart([b"want", envelope.encode_value(dst)])

    def _on_lane_dead(self, dst: str, sock: socket.socket) -> None:
        """A send found ``dst``'s lane socket closed: that incarnation is gone. Called on any
        thread, inside a send: the answers are queued for the loop, never run re-entrantly."""

        def fail() -> None:
            self._fail_lost(dst, sock)
            sock.close()

        self._jobs.put(fail)
        self._wake()

    def _peer_down(self, dst: str) -> None:
        """The supervisor says ``dst`` exited. Unless a send saw that death first (and it was
        dealt with then), the requests on its socket and those sent through ZeroMQ are
        answered UNAVAILABLE now rather than TIMEOUT at their deadline."""
        seen, sock = self._lanes.down(dst)
        if seen:
            return
        self._fail_lost(dst, sock)
        if sock is not None:
            sock.close()

    def _fail_lost(self, dst: str, sock: socket.socket | None) -> None:
        """UNAVAILABLE for requests to ``dst`` on ``sock`` and those that took ZeroMQ while it
        was alive (each may have reached it or may wait for its successor: no telling which; a
        late answer is counted ``reply.late``). Left alone: those on a newer lane socket and
        those that took ZeroMQ because nothing listened (they can only reach a successor)."""
        self._inflight.fail_lost(dst, lambda went_on: went_on is None or went_on is sock)

    def close(self) -> None:
        """Stop registered actors (reverse order) and close every socket."""
        self._heartbeat.watch.stop_all()
        for sock in (*self._dealers.values(), self._inbox):
            sock.close(0)
        self._events.close()
        self._close_loop()
        self._lanes.close()
        if self._lane_in is not None:
            self._lane_in.close()
            self.layout.lane(self.actor_id).unlink(missing_ok=True)
