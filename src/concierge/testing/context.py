"""FakeContext: runs one node in-process, without ZeroMQ, for component tests.

A private thread plays the bridge: ``start``, ``handle`` and every callback run there, as in
the real runtime, so threading mistakes show up in tests too. Requests the node sends to other
actors go to ``peers`` (callables ``(type, body) -> Any`` or other FakeContexts).
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pykka

from concierge.clock import Clock, MonotonicClock
from concierge.errors import ActorError, ErrorCode
from concierge.runtime.node import Health, Incoming, Lane, Node, Reply

PeerFn = Callable[[str, Any], Any]


class _Reply:
    def __init__(self, future: Future[Reply]) -> None:
        self.future = future

    def ok(self, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        if not self.future.done():
            self.future.set_result(Reply(ok=True, body=body, blobs=blobs))

    def error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        del retryable
        if not self.future.done():
            self.future.set_result(Reply(ok=False, code=ErrorCode(code), message=message))


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _noop() -> None:
    pass


class FakeContext:
    """An in-process stand-in for the runtime's NodeContext."""

    def __init__(
        self,
        actor_id: str,
        settings: Mapping[str, Any] | None = None,
        *,
        agent: Mapping[str, Any] | None = None,
        runtime_dir: Path | None = None,
        clock: Clock | None = None,
        peers: Mapping[str, PeerFn | FakeContext] | None = None,
    ) -> None:
        self.actor_id = actor_id
        self.settings: Mapping[str, Any] = dict(settings or {})
        self.agent: Mapping[str, Any] = dict(agent or {})
        self.runtime_dir = runtime_dir or Path("/tmp")  # noqa: S108 - fake, nothing is created there
        self.clock: Clock = clock or MonotonicClock()
        self.peers: dict[str, PeerFn | FakeContext] = dict(peers or {})
        self.counters: Counter[str] = Counter()
        self.health: tuple[Health, str] = ("ok", "")
        self.published: list[tuple[str, Any]] = []
        self.casts: list[tuple[str, str, Any]] = []
        self.supervisor_notes: list[tuple[str, Any]] = []
        self.actors: list[pykka.ActorRef[Any]] = []
        self.node: Node | None = None
        self.stopped_with: int | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None], _Timer]] = []
        self._seq = itertools.count()
        self._fds: dict[int, Callable[[int], None]] = {}
        self._thread = threading.Thread(target=self._loop, name=f"{actor_id}-bridge", daemon=True)
        self._thread.start()

    # --- test driver API -------------------------------------------------------------------
    def run_node(self, node_cls: type[Node]) -> Node:
        """Instantiate and start ``node_cls`` on the bridge thread."""
        done: Future[Node] = Future()

        def boot() -> None:
            try:
                node = node_cls(self)
                node.start()
                self.node = node
                done.set_result(node)
            except BaseException as err:  # noqa: BLE001 - test helper: hand any start failure to the test
                done.set_exception(err)

        self._jobs.put(boot)
        return done.result(timeout=30)

    def ask(self, type_: str, body: Any = None, *, timeout_s: float = 10.0, src: str = "test") -> Reply:
        """Deliver a request to the node and wait for its reply."""
        future: Future[Reply] = Future()
        msg = Incoming(kind="req", type=type_, body=body, src=src, reply=_Reply(future))
        self._deliver(msg)
        return future.result(timeout=timeout_s)

    def tell(
        self, type_: str, body: Any = None, *, kind: str = "cast", src: str = "test", blobs: tuple[bytes, ...] = ()
    ) -> None:
        """Deliver a cast (or an event with ``kind="evt"``) to the node."""
        self._deliver(Incoming(kind="evt" if kind == "evt" else "cast", type=type_, body=body, src=src, blobs=blobs))

    def close(self) -> None:
        """Stop the node, its actors and the bridge thread."""

        def shutdown() -> None:
            if self.node is not None:
                self.node.stop()
            for ref in reversed(self.actors):
                ref.stop(block=False)

        self._jobs.put(shutdown)
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _deliver(self, msg: Incoming) -> None:
        def run() -> None:
            assert self.node is not None, "run_node first"
            try:
                self.node.handle(msg)
            finally:
                for fd in msg.fds:  # as the bridge: a node keeps a descriptor by dup
                    os.close(fd)

        self._jobs.put(run)

    # --- NodeContext ---------------------------------------------------------------------------
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
        """Run the peer in a helper thread and call ``on_reply`` on the bridge thread."""

        def work() -> None:
            reply = self._peer_reply(dst, type, body, timeout_s)
            self._jobs.put(lambda: on_reply(reply))

        threading.Thread(target=work, daemon=True).start()

    def call(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        timeout_s: float,
        blobs: tuple[bytes, ...] = (),
    ) -> Reply:
        """Blocking request to a peer."""
        return self._peer_reply(dst, type, body, timeout_s)

    def _peer_reply(self, dst: str, type_: str, body: Any, timeout_s: float) -> Reply:
        peer = self.peers.get(dst)
        if peer is None:
            return Reply(ok=False, code=ErrorCode.UNAVAILABLE, message=f"no peer {dst}")
        if isinstance(peer, FakeContext):
            try:
                return peer.ask(type_, body, timeout_s=timeout_s, src=self.actor_id)
            except TimeoutError:
                return Reply(ok=False, code=ErrorCode.TIMEOUT, message="request timed out")
        try:
            return Reply(ok=True, body=peer(type_, body))
        except ActorError as err:
            return Reply(ok=False, code=err.code, message=err.message)

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
        """Record the cast; forward it to a FakeContext peer if there is one."""
        self.casts.append((dst, type, body))
        peer = self.peers.get(dst)
        if isinstance(peer, FakeContext):
            peer.tell(type, body, src=self.actor_id, blobs=blobs)

    def send_fds(self, dst: str, type: str, body: Any, fds: tuple[int, ...], *, ttl_s: float = 5.0) -> bool:
        """Hand dups of ``fds`` (what SCM_RIGHTS does) to a FakeContext peer; False without one."""
        del ttl_s
        peer = self.peers.get(dst)
        if not isinstance(peer, FakeContext):
            return False
        self.casts.append((dst, type, body))
        peer._deliver(Incoming("cast", type, body, self.actor_id, fds=tuple(os.dup(fd) for fd in fds)))
        return True

    def publish(self, topic: str, body: Any = None) -> None:
        """Record the event."""
        self.published.append((topic, body))

    def subscribe(self, topic: str) -> None:
        """Nothing to do in-process: tests deliver events with ``tell(kind="evt")``."""

    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = 1) -> None:
        """Remember the fd; tests trigger it with :meth:`fire_fd`."""
        self._fds[fd] = callback

    def unwatch_fd(self, fd: int) -> None:
        """Forget the fd."""
        self._fds.pop(fd, None)

    def fire_fd(self, fd: int, revents: int = 1) -> None:
        """Test hook: pretend ``fd`` became ready."""
        callback = self._fds.get(fd)
        if callback is not None:
            self._jobs.put(lambda: callback(revents))

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Timer:
        """Schedule on the bridge thread (real time)."""
        timer = _Timer()
        due = self.clock.monotonic() + delay_s
        self._jobs.put(lambda: heapq.heappush(self._timers, (due, next(self._seq), callback, timer)))
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Queue on the bridge thread."""
        self._jobs.put(callback)

    def set_health(self, status: Health, detail: str = "") -> None:
        """Record the health."""
        self.health = (status, detail)

    def count(self, name: str, n: int = 1) -> None:
        """Bump a counter."""
        self.counters[name] += n

    def notify_supervisor(self, type: str, body: Any = None) -> None:
        """Record the note."""
        self.supervisor_notes.append((type, body))

    def register_actor(self, ref: pykka.ActorRef[Any]) -> None:
        """Remember the actor so :meth:`close` stops it."""
        self.actors.append(ref)

    def stop(self, code: int = 0) -> None:
        """Record that the node asked to end its process."""
        self.stopped_with = code

    def in_bridge_thread(self) -> bool:
        """True on the fake bridge thread."""
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - self.clock.monotonic())
            try:
                job = self._jobs.get(timeout=timeout if timeout is not None else 0.05)
            except queue.Empty:
                job = _noop
            if job is None:
                return
            job()
            now = self.clock.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback, timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    callback()
