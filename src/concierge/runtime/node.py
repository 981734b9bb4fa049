"""The contract between the per-process runtime (the bridge) and an actor process's own code.

A *node* is the code of one supervised OS process. The runtime owns every socket and fd and
calls the node on its single I/O thread (the bridge); the node hands slow work to pykka actors
or worker threads and answers through a thread-safe :class:`ReplyPort`.
Must not import zmq: nodes are testable with :class:`concierge.testing.context.FakeContext`.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import msgspec

from concierge.errors import ActorError, ErrorCode

if TYPE_CHECKING:
    import pykka

    from concierge.clock import Clock

Kind = Literal["req", "rep", "err", "cast", "evt"]
Health = Literal["ok", "degraded", "failing", "unknown"]
Lane = Literal["default", "input"]


class ReplyPort(Protocol):
    """Answers one request exactly once; callable from any thread."""

    def ok(self, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        """Send the successful result."""
        ...

    def error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        """Send an error reply with a stable code and a human message (no traceback)."""
        ...


class Incoming(msgspec.Struct, frozen=True):
    """A request, cast or event delivered to a node.

    ``body`` is a plain msgpack value (dict, list, str, int, float, bool, None, bytes);
    actors convert it to their typed messages (see each ``messages.py``). A frozen msgspec
    struct rather than a frozen dataclass: built for every message, in 0.2 µs instead of 2.4.
    """

    kind: Kind
    type: str
    body: Any
    src: str
    id: int = 0
    deadline_ns: int = 0
    blobs: tuple[bytes, ...] = ()
    reply: ReplyPort | None = None
    #: descriptors that came with a lane datagram (SCM_RIGHTS), at most ``MAX_LANE_FDS``; the
    #: runtime closes them after ``handle`` returns, so a node keeps one with ``os.dup``
    fds: tuple[int, ...] = ()


class Reply(msgspec.Struct, frozen=True):
    """The outcome of a request: ``ok`` with ``body``, or an error ``code`` and ``message``."""

    ok: bool
    body: Any = None
    code: ErrorCode | None = None
    message: str = ""
    blobs: tuple[bytes, ...] = ()

    def unwrap(self) -> Any:
        """Return the body, or raise :class:`ActorError` for an error reply."""
        if not self.ok:
            raise ActorError(self.code or ErrorCode.INTERNAL, self.message)
        return self.body


class TimerHandle(Protocol):
    """A scheduled callback that can still be cancelled."""

    def cancel(self) -> None:
        """Prevent the callback from running if it has not run yet."""
        ...


POLLIN = select.POLLIN
POLLOUT = select.POLLOUT


class NodeContext(Protocol):
    """What the runtime offers a node. Methods marked *bridge only* must be called from
    the bridge thread (inside ``start``, ``handle`` or a callback); all others are thread-safe.
    """

    actor_id: str
    settings: Mapping[str, Any]
    agent: Mapping[str, Any]
    runtime_dir: Path
    clock: Clock

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
        """Send a request; ``on_reply`` runs on the bridge thread (also for TIMEOUT)."""
        ...

    def call(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        timeout_s: float,
        blobs: tuple[bytes, ...] = (),
    ) -> Reply:
        """Blocking request for worker/actor threads; never call it on the bridge thread."""
        ...

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
        """One-way message. On the ``input`` lane nothing is queued for an absent peer."""
        ...

    def publish(self, topic: str, body: Any = None) -> None:
        """Emit an event on the lossy event plane (never state that cannot be re-queried)."""
        ...

    def subscribe(self, topic: str) -> None:
        """Receive events whose topic starts with ``topic`` (bridge only, usually in start)."""
        ...

    def watch_fd(self, fd: int, callback: Callable[[int], None], events: int = POLLIN) -> None:
        """Call ``callback(revents)`` on the bridge thread when ``fd`` is ready (bridge only)."""
        ...

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching ``fd`` (bridge only)."""
        ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the bridge thread after ``delay_s`` seconds."""
        ...

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the bridge thread as soon as possible (wakes the loop)."""
        ...

    def set_health(self, status: Health, detail: str = "") -> None:
        """Report this node's functional health in the next heartbeat."""
        ...

    def count(self, name: str, n: int = 1) -> None:
        """Bump a per-actor counter shown by ``concierge metrics``."""
        ...

    def notify_supervisor(self, type: str, body: Any = None) -> None:
        """Tell the supervisor something about the whole agent (e.g. ``freeze.state``)."""
        ...

    def register_actor(self, ref: pykka.ActorRef[Any]) -> None:
        """Include a pykka actor in heartbeat liveness checks and the ordered stop."""
        ...

    def in_bridge_thread(self) -> bool:
        """True on the bridge thread (where blocking calls are forbidden)."""
        ...

    def stop(self, code: int = 0) -> None:
        """End this actor process with a classified exit code (see ``concierge.errors.ExitCode``)."""
        ...


@runtime_checkable
class FdSender(Protocol):
    """Optional NodeContext capability: hand open descriptors to another actor process."""

    def send_fds(self, dst: str, type: str, body: Any, fds: tuple[int, ...], *, ttl_s: float = 5.0) -> bool:
        """Cast ``body`` with ``fds`` (SCM_RIGHTS) on ``dst``'s lane, from any thread; False
        when it could not go (peer absent or behind): nothing is queued, ours stay open."""
        ...


class Node:
    """Base class of an actor process's code; the config's ``entry`` names a subclass.

    The runtime calls :meth:`start` once (before Ready), :meth:`handle` for every delivery and
    :meth:`stop` once, all on the bridge thread. None of them may block.
    """

    #: request/cast/event types this node accepts; others get UNKNOWN_TYPE without a call
    accepts: frozenset[str] | None = None
    #: modules this node imports lazily (back-ends chosen at start): the fork server imports
    #: them before forking, because an import in the forked child costs more memory than the
    #: module itself (it copies the import machinery's and sys.modules' shared pages)
    preload: tuple[str, ...] = ()

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def idle_hold(self) -> str:
        """Why this node must not be stopped as idle now ("" = it may be). An on-demand actor
        with ``idle_stop_s`` is stopped after that long without a message; a node holding work
        that outlives its messages (an exec child, an open file handle) says so here. Called
        on the bridge thread at each heartbeat: must be cheap and never block."""
        return ""

    def start(self) -> None:
        """Create pykka actors, open devices, register fds (raise UnavailableError if absent)."""

    def handle(self, msg: Incoming) -> None:
        """Deal with one delivery; the default refuses every type."""
        if msg.reply is not None:
            msg.reply.error(ErrorCode.UNKNOWN_TYPE, f"{self.ctx.actor_id} does not handle {msg.type}")

    def stop(self) -> None:
        """Release what :meth:`start` acquired; pykka actors are stopped by the runtime."""
