"""The bridge: the one I/O thread of an actor process, and the real :class:`NodeContext`.

It owns every ZeroMQ socket and watched fd of the process and runs one poll loop over the
control DEALER (supervisor), the inbox ROUTER (data plane), outbound DEALERs (replies to our
requests), the event SUB, the lane (a unix datagram socket), an eventfd that other threads use
to hand it work, and node fds. Other threads never touch a ZeroMQ socket: they encode in their
own thread and queue frames here.

Why a lane beside ZeroMQ: a ZeroMQ ipc round trip costs four thread wake-ups (the application
and I/O threads of both ends), ~120 µs on a small guest before any of our code runs. A request
or reply that fits one datagram (no blobs, at most ``LANE_MAX`` bytes) goes straight from the
sending thread to the peer's lane, one ``sendto`` and one wake-up. Anything else, and any
datagram the kernel refuses (peer restarting, queue full), takes ZeroMQ, which queues for an
absent peer exactly as before. Replies need no route: they go to the requester's lane, or to
its inbox. Concurrent requests were never ordered (blocking handlers run on a pool); casts keep
ZeroMQ's per-peer order, except the lossy ``input`` lane.
Must not import ``concierge.supervisor``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import queue
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

import pykka
import zmq

from concierge.clock import Clock, MonotonicClock
from concierge.errors import ErrorCode, ProtocolError
from concierge.runtime import envelope, sockets
from concierge.runtime.endpoints import RuntimeLayout
from concierge.runtime.node import Health, Incoming, Kind, Lane, Node, Reply
from concierge.runtime.watermark import Watermark

log = logging.getLogger(__name__)
#: largest header + body sent as one lane datagram; larger messages take ZeroMQ
LANE_MAX = 60_000
#: a heartbeat this much later than due means the whole process stood still
_STALL_S = 1.0
_LANE_RECV = 65_536

Frames = list[bytes]


class _Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _ReplyPort:
    """Answers one request exactly once, from any thread.

    ``route`` set: the request came through the inbox ROUTER and the answer goes back along it.
    ``route`` None: it came on the lane; the answer goes to the requester's lane when it fits,
    sent by the answering thread itself (no hand-off to the bridge thread), else to its inbox.
    """

    __slots__ = ("_bridge", "_done", "_header", "_route")

    def __init__(self, bridge: Bridge, header: envelope.Header, route: bytes | None = None) -> None:
        self._bridge = bridge
        self._header = header
        self._route = route
        self._done = False

    def _send(self, kind: str, body: Any, blobs: tuple[bytes, ...]) -> None:
        if self._done:
            return
        self._done = True
        req, bridge = self._header, self._bridge
        header = envelope.Header(kind, req.type, 0, req.id, bridge.actor_id, req.src)
        if self._route is not None:
            routed = [self._route, *envelope.encode(header, body, blobs)]
            bridge.submit(lambda: bridge.send_inbox(routed))
            return
        if not blobs and bridge.lane_send(req.src, envelope.encode_datagram(header, body)):
            return
        frames = envelope.encode(header, body, blobs)
        bridge.submit(lambda: bridge.cast_frames(req.src, "default", frames))

    def ok(self, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        self._send("rep", body, blobs)

    def error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        self._send("err", {"code": str(code), "message": message, "retryable": retryable}, ())


class Bridge:
    """Per-process runtime: poll loop, routing, deadlines, heartbeats (implements NodeContext)."""

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
        self.actor_id = actor_id
        self.settings: Mapping[str, Any] = welcome.get("settings", {})
        self.agent: Mapping[str, Any] = welcome.get("agent", {})
        self.runtime_dir: Path = layout.root
        self.clock: Clock = clock or MonotonicClock()
        self.layout = layout
        self.node: Node | None = None
        self.exit_code = 0
        self._zctx = zctx
        self._control = control
        self._hb_interval = float(welcome.get("heartbeat_interval_s", 0.5))
        self._unresponsive_s = float(welcome.get("actor_unresponsive_s", 3.0))
        self._orphan_s = max(3.0, 6 * self._hb_interval)
        self._on_frozen = on_frozen
        self._ids = itertools.count(1)
        self._thread_id = threading.get_ident()
        self._running = True
        self._counters: Counter[str] = Counter()
        self._health: tuple[Health, str] = ("ok", "")
        self._actors: list[pykka.ActorRef[Any]] = []
        self._pings: dict[int, tuple[Any, float]] = {}
        self._last_pong: dict[int, float] = {}
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._timers: list[tuple[float, int, Callable[[], None], _Timer]] = []
        # in-flight requests: id -> (on_reply, expires, dst, type, the lane socket it went on or
        # None). Swept when the earliest may be due, not one heap timer each: a timer per request
        # cost ~3 µs of heap work apiece
        self._pending: dict[int, tuple[Callable[[Reply], None], float, str, str, socket.socket | None]] = {}
        self._next_expiry = math.inf
        self._lane_waiting = 0  # requests sent on the lane and not answered yet
        self._spin_until = 0.0
        spin_us = float(welcome.get("lane_spin_us", 50))
        self._spin_s = spin_us / 1e6 if len(os.sched_getaffinity(0)) > 1 else 0.0
        self._fds: dict[int, Callable[[int], None]] = {}
        self._dealers: dict[tuple[str, Lane], zmq.Socket[bytes]] = {}
        # select.poll, not zmq.Poller: zmq_poll spends ~6 extra syscalls per wake-up checking
        # every ZeroMQ socket's mailbox, on the lane's hot path too. ZeroMQ sockets are watched
        # through their ZMQ_FD instead (readable when the mailbox has commands) and drained on
        # ZMQ_EVENTS; a send can consume a pending read signal, so a socket we sent on is drained
        # again before the loop sleeps (the pattern of pyzmq's own event-loop integration).
        self._poller = select.poll()
        self._zmq_fds: dict[int, Callable[[], None]] = {}
        self._touched: set[zmq.Socket[bytes]] = set()
        self._drains: dict[zmq.Socket[bytes], Callable[[], None]] = {}
        self._inbox = sockets.router(zctx, layout.url(layout.inbox(actor_id)))
        self._pub: zmq.Socket[bytes] | None = None
        self._lane_in: socket.socket | None = None
        # one connected datagram socket per peer: a sendto by path walks the filesystem on
        # every message; a connected socket also notices a restarted peer (ECONNREFUSED)
        self._lane_out: dict[str, socket.socket] = {}
        self._sub: zmq.Socket[bytes] | None = None
        self._last_supervisor = self._last_beat = self.clock.monotonic()
        self._watermark = Watermark.from_welcome(welcome, clock=self.clock.monotonic)
        self._watch_zmq(self._control, self._drain_control)
        self._watch_zmq(self._inbox, self._drain_inbox)
        self._poller.register(self._wake_fd, select.POLLIN)

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
            self._next_expiry = min(self._next_expiry, expires)
            sock = self._lane_send(dst, datagram) if datagram else None
            self._pending[msg_id] = (on_reply, expires, dst, type, sock)
            if sock is not None:
                self._lane_waiting += 1
                self._spin_until = time.monotonic() + self._spin_s
                return
            frames = envelope.encode(header, body, blobs)
            if not self._send_dealer(dst, "default", frames):
                self._finish(
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
            if not self.lane_send(dst, envelope.encode_datagram(header, body)):
                self._counters["cast.dropped"] += 1
            return
        frames = envelope.encode(header, body, blobs)
        if self.in_bridge_thread():
            if not self._send_dealer(dst, lane, frames):
                self._counters["cast.dropped"] += 1
        else:
            self.submit(lambda: self.cast_frames(dst, lane, frames))

    def lane_send(self, dst: str, datagram: bytes) -> bool:
        """Send one datagram to ``dst``'s lane, from any thread; False when it is too big or
        the kernel refuses it (peer absent, queue full)."""
        return self._lane_send(dst, datagram) is not None

    def _lane_send(self, dst: str, datagram: bytes) -> socket.socket | None:
        """:meth:`lane_send`, returning the connected socket the datagram went on."""
        if len(datagram) > LANE_MAX:
            return None
        sock = self._lane_out.get(dst)
        if sock is not None:
            try:
                sock.send(datagram)
            except BlockingIOError:  # the peer is behind: its queue is full
                self._counters["lane.full"] += 1
                return None
            except OSError:  # the peer is gone or restarted (a new socket at its path)
                self._lane_out.pop(dst, None)
            else:
                self._counters["msg.out"] += 1
                return sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.connect(str(self.layout.lane(dst)))
            sock.send(datagram)
        except OSError:
            sock.close()
            self._counters["lane.refused"] += 1
            return None
        self._lane_out[dst] = sock
        self._counters["msg.out"] += 1
        return sock

    def open_lanes(self) -> None:
        """Bind this process's lane (before Ready, so no datagram is lost)."""
        if self._lane_in is not None:
            return
        path = self.layout.lane(self.actor_id)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.bind(str(path))
        path.chmod(0o600)
        self._lane_in = sock
        self.watch_fd(sock.fileno(), self._drain_lane)

    def _spin(self) -> list[tuple[int, int]]:
        """Poll without sleeping until something is ready or the spin window of the last lane
        request closes. Why: its reply usually comes within tens of µs, and a thread that slept
        meanwhile is woken by a scheduler round trip (on a VM, an idle vCPU's wake-up) that costs
        as much again. Bounded: at most ``lane_spin_us`` of CPU per lane request sent, never
        on one CPU (the peer needs it), and anything else that becomes ready ends it."""
        poll = self._poller.poll
        until = self._spin_until
        while time.monotonic() < until:
            events = poll(0)
            if events:
                return events
        return []

    def _drain_lane(self, _revents: int) -> None:
        """Take one datagram per wake-up: poll is level-triggered and reports the next at once,
        and a drain loop would end on an EAGAIN recv, a syscall (~5 µs on a small guest) spent
        on every request of a request/reply exchange."""
        assert self._lane_in is not None
        try:
            data = self._lane_in.recv(_LANE_RECV)
        except BlockingIOError:
            return
        counters = self._counters
        counters["msg.in"] += 1
        counters["lane.in"] += 1
        try:
            header, body = envelope.decode_datagram(data)
        except ProtocolError:
            self._counters["msg.malformed"] += 1
            return
        kind = header.kind
        if kind in {"rep", "err"}:
            self._finish(header.corr, _reply_of(header, body, ()))
            return
        if header.deadline_ns and header.deadline_ns < time.monotonic_ns():
            self._counters["msg.expired"] += 1
            return
        if kind == "req":
            port = _ReplyPort(self, header)
            self._deliver(Incoming("req", header.type, body, header.src, header.id, header.deadline_ns, (), port))
        else:
            self._deliver(Incoming("cast", header.type, body, header.src, header.id, header.deadline_ns))

    def cast_frames(self, dst: str, lane: Lane, frames: Frames) -> None:
        """Send pre-encoded cast frames (bridge thread)."""
        if not self._send_dealer(dst, lane, frames):
            self._counters["cast.dropped"] += 1

    def publish(self, topic: str, body: Any = None) -> None:
        """Send an event to the proxy (lossy)."""
        header = envelope.Header("evt", topic, 0, 0, self.actor_id, "*")
        frames = [topic.encode(), *envelope.encode(header, body)]

        def send() -> None:
            if self._pub is None:
                self._pub = sockets.publisher(self._zctx, self.layout.url(self.layout.events_in))
            try:
                self._pub.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self._counters["evt.dropped"] += 1

        self.submit(send)

    def subscribe(self, topic: str) -> None:
        """Receive events whose topic starts with ``topic``."""
        if self._sub is None:
            self._sub = sockets.subscriber(self._zctx, self.layout.url(self.layout.events_out))
            self._watch_zmq(self._sub, self._drain_events)
        self._sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._touched.add(self._sub)  # the option is sent like a message: re-check for input

    # --- NodeContext: loop services ---------------------------------------------------------------
    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = select.POLLIN) -> None:
        """Call ``callback(revents)`` when ``fd`` is ready; flags are ``select.POLL*`` both ways."""
        self._fds[fd] = callback
        self._poller.register(fd, events)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        if self._fds.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Timer:
        """Schedule ``callback`` on the bridge thread."""
        timer = _Timer()
        entry = (self.clock.monotonic() + delay_s, next(self._ids), callback, timer)
        if self.in_bridge_thread():
            heapq.heappush(self._timers, entry)
        else:
            self.submit(lambda: heapq.heappush(self._timers, entry))
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the bridge thread soon."""
        self.submit(callback)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the bridge thread: now if already there, else queued with a wake-up."""
        if self.in_bridge_thread():
            job()
            return
        self._jobs.put(job)
        os.eventfd_write(self._wake_fd, 1)

    def set_health(self, status: Health, detail: str = "") -> None:
        """Report functional health in the next heartbeat."""
        self._health = (status, detail)

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
        self._actors.append(ref)
        self._last_pong[id(ref)] = self.clock.monotonic()

    def in_bridge_thread(self) -> bool:
        """True on the bridge thread."""
        return threading.get_ident() == self._thread_id

    def stop(self, code: int = 0) -> None:
        """Leave the loop; the runner stops the node and exits with ``code``."""
        self.exit_code = code
        self._running = False
        os.eventfd_write(self._wake_fd, 1)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Poll until stopped; returns the process exit code."""
        self._thread_id = threading.get_ident()
        self.open_lanes()
        # the node's start may have taken seconds on a slow guest: the supervisor's silence is
        # measured from now, not from when the bridge was built
        self._last_supervisor = self._last_beat = self.clock.monotonic()
        self.call_later(0.0, self._heartbeat)
        while self._running:
            events = self._spin() if self._lane_waiting and self._spin_until > time.monotonic() else None
            if not events:
                timeout_ms = 1000
                due = min(self._timers[0][0], self._next_expiry) if self._timers else self._next_expiry
                if due != math.inf:
                    timeout_ms = max(0, min(1000, int((due - self.clock.monotonic()) * 1000) + 1))
                events = self._poller.poll(timeout_ms)
            for fd, revents in events:
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
            self._run_timers()
            while self._touched:
                sock = self._touched.pop()
                self._drains[sock]()
        return self.exit_code

    def _watch_zmq(self, sock: zmq.Socket[bytes], drain: Callable[[], None]) -> None:
        fd = cast(int, sock.getsockopt(zmq.FD))
        self._zmq_fds[fd] = drain
        self._drains[sock] = drain
        self._poller.register(fd, select.POLLIN)

    def _run_timers(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_expiry:
            self._expire_pending(now)
        while self._timers and self._timers[0][0] <= now:
            _, _, callback, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback()

    def _drain_jobs(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            job()

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
            sock = sockets.dealer(self._zctx, url, ident, immediate=lane == "input")
            self._dealers[(dst, lane)] = sock
            self._watch_zmq(sock, lambda: self._drain_dealer(sock))
        self._touched.add(sock)
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=len(frames) <= 3)
        except zmq.Again:
            return False
        self._counters["msg.out"] += 1
        return True

    def _drain_inbox(self) -> None:
        while _readable(self._inbox):  # no exception per drain
            frames = self._inbox.recv_multipart(zmq.NOBLOCK)
            self._counters["msg.in"] += 1
            route, rest = frames[0], frames[1:]
            try:
                header, body, blobs = envelope.decode(rest)
            except ProtocolError:
                self._counters["msg.malformed"] += 1
                continue
            if header.kind in {"rep", "err"}:  # the answer to a lane request
                self._finish(header.corr, _reply_of(header, body, blobs))
                continue
            if header.deadline_ns and header.deadline_ns < time.monotonic_ns():
                self._counters["msg.expired"] += 1
                continue
            reply = _ReplyPort(self, header, route) if header.kind == "req" else None
            kind: Kind = "req" if header.kind == "req" else "cast"
            self._deliver(Incoming(kind, header.type, body, header.src, header.id, header.deadline_ns, blobs, reply))

    def _deliver(self, msg: Incoming) -> None:
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

    def _drain_dealer(self, sock: zmq.Socket[bytes]) -> None:
        while _readable(sock):  # no exception per drain
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                header, body, blobs = envelope.decode(frames)
            except ProtocolError:
                self._counters["msg.malformed"] += 1
                continue
            if header.kind in {"rep", "err"}:
                self._finish(header.corr, _reply_of(header, body, blobs))

    def _finish(self, msg_id: int, reply: Reply) -> None:
        entry = self._pending.pop(msg_id, None)
        if entry is None:
            self._counters["reply.late"] += 1
            return
        callback = entry[0]
        if entry[4] is not None:
            self._lane_waiting -= 1
        try:
            callback(reply)
        except Exception:  # loop boundary: a reply callback bug must not stop the process loop
            log.exception("reply callback failed", extra={"event": "node.callback_failed"})
            self._counters["node.errors"] += 1

    def _expire_pending(self, now: float) -> None:
        """Answer TIMEOUT for every request past its time, then find the next expiry."""
        for msg_id in [k for k, entry in self._pending.items() if entry[1] <= now]:
            entry = self._pending.get(msg_id)
            if entry is None:  # a callback of this sweep finished it
                continue
            self._counters["request.timeout"] += 1
            message = f"{entry[2]} did not answer {entry[3]} in time"
            self._finish(msg_id, Reply(False, code=ErrorCode.TIMEOUT, message=message))
        self._next_expiry = min((entry[1] for entry in self._pending.values()), default=math.inf)

    def _drain_events(self) -> None:
        assert self._sub is not None
        while _readable(self._sub):  # no exception per drain
            frames = self._sub.recv_multipart(zmq.NOBLOCK)
            try:
                header, body, blobs = envelope.decode(frames[1:])
            except ProtocolError:
                continue
            if header.src != self.actor_id:
                self._deliver(Incoming("evt", header.type, body, header.src, blobs=blobs))

    # --- control plane -------------------------------------------------------------------------
    def _drain_control(self) -> None:
        while _readable(self._control):  # no exception per drain
            verb, *rest = self._control.recv_multipart(zmq.NOBLOCK)
            self._last_supervisor = self.clock.monotonic()
            if verb == b"stop":
                log.info("stop requested", extra={"event": "actor.stopping"})
                self.stop(0)
            elif verb == b"frozen" and rest and self._on_frozen is not None:
                self._on_frozen(rest[0] == b"1")
            elif verb == b"down" and rest:
                self._peer_down(rest[0].decode(errors="replace"))

    def _peer_down(self, dst: str) -> None:
        """``dst`` exited: the requests that went on its lane died with it (its successor has
        a new socket), so they are answered UNAVAILABLE now rather than TIMEOUT later. Those
        that took ZeroMQ may still reach the successor and keep waiting."""
        sock = self._lane_out.pop(dst, None)
        if sock is None:
            return
        lost = [msg_id for msg_id, entry in self._pending.items() if entry[4] is sock]
        for msg_id in lost:
            self._counters["request.peer_down"] += 1
            message = f"{dst} stopped before it answered"
            self._finish(msg_id, Reply(False, code=ErrorCode.UNAVAILABLE, message=message))

    def _heartbeat(self) -> None:
        now = self.clock.monotonic()
        late = now - self._last_beat - self._hb_interval
        self._last_beat = now
        if late > _STALL_S:
            # this process did not run either (a paused VM, a starved CPU): the silence of the
            # supervisor and of our own threads is ours to forgive, not evidence against them
            log.warning("heartbeat %.1f s late: watchdog clocks restart", late, extra={"event": "actor.stalled"})
            self._last_supervisor = now
            self._pings.clear()
            for key in self._last_pong:
                self._last_pong[key] = now
        if self._watermark.check():  # over the hard watermark while idle: restart to give it back
            log.error(
                "anonymous RSS %d MiB over the hard watermark while idle: restarting",
                self._watermark.rss >> 20,
                extra={"event": "actor.memory_hard"},
            )
            self.stop(75)
            return
        stuck = []
        for ref in self._actors:
            key = id(ref)
            if not ref.is_alive():
                log.error("actor thread died", extra={"event": "actor.thread_died"})
                self.stop(70)
                return
            pending = self._pings.get(key)
            if pending is not None and pending[0].done():
                self._last_pong[key] = pending[1]
                pending = None
            if pending is None:
                self._pings[key] = (_ask_ping(ref), now)
            if now - self._last_pong.get(key, now) > self._unresponsive_s:
                stuck.append(ref.actor_class.__name__)
        status, detail = self._health
        if stuck:
            status, detail = "failing", f"unresponsive actor thread: {', '.join(stuck)}"
        payload = {
            "health": status,
            "detail": detail,
            "stuck": bool(stuck),
            "counters": dict(self._counters),
        }
        self._touched.add(self._control)
        self._control.send_multipart([b"hb", envelope.encode_value(payload)])
        if now - self._last_supervisor > self._orphan_s:
            log.error("supervisor silent, exiting", extra={"event": "actor.orphaned"})
            self.stop(75)
            return
        self.call_later(self._hb_interval, self._heartbeat)

    def close(self) -> None:
        """Stop registered actors (reverse order) and close every socket."""
        for ref in reversed(self._actors):
            ref.stop(block=True, timeout=2.0) if ref.is_alive() else None
        for sock in (*self._dealers.values(), self._inbox, self._pub, self._sub):
            if sock is not None:
                sock.close(0)
        os.close(self._wake_fd)
        for lane_sock in self._lane_out.values():
            lane_sock.close()
        if self._lane_in is not None:
            self._lane_in.close()
            self.layout.lane(self.actor_id).unlink(missing_ok=True)


def _reply_of(header: envelope.Header, body: Any, blobs: tuple[bytes, ...]) -> Reply:
    """The Reply a ``rep`` or ``err`` envelope stands for (unknown error codes: INTERNAL)."""
    if header.kind == "rep":
        return Reply(True, body=body, blobs=blobs)
    data = body if isinstance(body, dict) else {}
    code = data.get("code", "INTERNAL")
    return Reply(
        False,
        code=ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.INTERNAL,
        message=str(data.get("message", "")),
    )


def _readable(sock: zmq.Socket[bytes]) -> bool:
    """True while a message is waiting (cheaper than ending each drain on a zmq.Again)."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & _Z_IN)


_Z_IN = int(zmq.POLLIN)  # a plain int: zmq's flags are IntFlag members, slow to combine


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


def _ask_ping(ref: pykka.ActorRef[Any]) -> _DoneFuture:
    return _DoneFuture(ref.ask("ping", block=False))
