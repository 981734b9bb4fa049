"""ServiceNode: the common shape of a capability actor (request in, typed answer out).

Handlers are methods decorated with :func:`handler`; they run in the node's pykka actor thread
(one at a time, so they may keep state without locks) or, when ``blocking=True``, on a small
worker pool so that one slow or hung probe never delays the other requests of the actor, or,
when ``inline=True``, on the bridge thread itself. Inline is for answers that take a few
microseconds and never block (a cached value, a procfs read): handing a request to another
thread and waking it costs ~40 µs on a small guest, more than such an answer itself. An inline
handler must be safe beside the actor thread (read immutable snapshots, or take a lock).
A handler returns the reply body or raises :class:`concierge.errors.ActorError`.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pykka

from concierge.errors import ActorError, ErrorCode
from concierge.runtime.node import Incoming, Node, NodeContext

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_HANDLER_ATTR = "_concierge_handler"


def handler(type_: str, *, blocking: bool = False, inline: bool = False) -> Callable[[F], F]:
    """Mark a method ``(self, msg: Incoming) -> body`` as the handler of message ``type_``."""
    if blocking and inline:
        raise ValueError(f"handler {type_}: blocking and inline exclude each other")

    def mark(func: F) -> F:
        setattr(func, _HANDLER_ATTR, (type_, "pool" if blocking else "inline" if inline else "actor"))
        return func

    return mark


class _ServiceActor(pykka.ThreadingActor):
    """Runs non-blocking handlers one at a time; failures in casts crash the process."""

    use_daemon_thread = False

    @staticmethod
    def _create_actor_inbox() -> Any:
        """A SimpleQueue (C, one lock) instead of pykka's queue.Queue (Python, a Condition
        and three locks): the hand-off from the bridge thread costs half as much."""
        return queue.SimpleQueue()

    def __init__(self, node: ServiceNode) -> None:
        super().__init__()
        self.node = node

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Incoming):
            self.node.run_handler(message)
            return None
        if message == "ping":  # liveness probe from the runtime's heartbeat
            return "pong"
        return None


class ServiceNode(Node):
    """A node whose deliveries are served by ``@handler`` methods of the subclass."""

    #: worker threads for ``blocking=True`` handlers
    worker_threads = 4
    #: message type -> (method name, where it runs), collected once per class at class creation
    #: (in the fork server's image, not by walking ``dir()`` in every forked actor)
    _handler_table: dict[str, tuple[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[str, tuple[str, str]] = {}
        for name in dir(cls):
            mark = getattr(getattr(cls, name, None), _HANDLER_ATTR, None)
            if mark is not None:
                type_, where = mark
                table[type_] = (name, where)
        cls._handler_table = table

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self._handlers: dict[str, tuple[Callable[[Incoming], Any], str]] = {
            type_: (getattr(self, name), where) for type_, (name, where) in self._handler_table.items()
        }
        self.accepts = frozenset(self._handlers)
        self._actor: pykka.ActorRef[Any] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the actor thread (and the worker pool when a handler needs it)."""
        self._actor = _ServiceActor.start(self)
        self.ctx.register_actor(self._actor)
        if any(where == "pool" for _, where in self._handlers.values()):
            self._pool = ThreadPoolExecutor(
                max_workers=self.worker_threads, thread_name_prefix=f"{self.ctx.actor_id}-work"
            )
        self.on_start()

    def on_start(self) -> None:
        """Hook for subclasses: runs on the bridge thread after the actor exists."""

    def handle(self, msg: Incoming) -> None:
        """Dispatch to the actor thread or the worker pool, or answer at once (inline)."""
        entry = self._handlers.get(msg.type)
        if entry is None:
            super().handle(msg)
            return
        where = entry[1]
        if where == "inline":
            self.run_handler(msg)
        elif where == "pool" and self._pool is not None:
            self._pool.submit(self.run_handler, msg)
        elif self._actor is not None:
            self._actor.tell(msg)

    def run_handler(self, msg: Incoming) -> None:
        """Run the handler of ``msg`` and answer it (in the actor or a worker thread)."""
        func, _ = self._handlers[msg.type]
        started = time.monotonic()
        try:
            result = func(msg)
        except ActorError as err:
            if msg.reply is not None:
                msg.reply.error(err.code, err.message, retryable=err.retryable)
            else:
                log.warning("%s failed: %s", msg.type, err.message, extra={"event": "cast.failed"})
            return
        except Exception as err:  # loop boundary: a handler bug becomes INTERNAL, not a dead actor
            log.exception("handler %s crashed", msg.type, extra={"event": "handler.crash"})
            if msg.reply is not None:
                msg.reply.error(ErrorCode.INTERNAL, f"internal error in {msg.type}: {type(err).__name__}")
            return
        finally:
            self.ctx.count(f"handled.{msg.type}")
            self.ctx.count("handler_us", int((time.monotonic() - started) * 1e6))
        if msg.reply is not None:
            msg.reply.ok(result)

    def stop(self) -> None:
        """Shut the worker pool down without waiting for hung probes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.on_stop()

    def on_stop(self) -> None:
        """Hook for subclasses: release devices and files."""
