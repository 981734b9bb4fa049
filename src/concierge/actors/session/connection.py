"""One attached session process as the gateway sees it: a non-blocking framed unix stream.

Reads and writes on the bridge thread through ``ctx.watch_fd``. Everything here is bounded:

* inbound, at most one frame is held, and its size is checked on the header against
  ``HANDSHAKE_FRAME`` until the agent is welcomed, then against ``max_frame``;
* outbound, once more than ``max_buffered`` bytes wait for the agent the gateway stops reading
  from it (back-pressure: a peer that does not read cannot make us queue answers to its own
  requests); a frame that would take the queue past ``max_buffered + max_frame`` (the host
  keeps sending to an agent that does not read) closes the connection instead.

No exception leaves the fd callback: a bug or a hostile byte closes this connection only.
Must not import zmq.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable
from typing import Any

from concierge.actors.session import framing
from concierge.actors.session.arbiter import Agent
from concierge.actors.session.identity import Peer
from concierge.actors.session.messages import HANDSHAKE_FRAME, MAX_FRAME
from concierge.errors import ProtocolError
from concierge.runtime.node import POLLIN, POLLOUT, NodeContext, TimerHandle

log = logging.getLogger(__name__)

FrameHandler = Callable[["AgentConn", str, Any, tuple[bytes, ...]], None]
CloseHandler = Callable[["AgentConn", str], None]
#: bytes read per recv (one bridge callback never holds more than this beyond the frame limit)
READ_CHUNK = 256 * 1024
#: the peer is gone (reported even while we do not ask for POLLIN)
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class AgentConn:
    """The socket, credentials and policy record of one agent."""

    def __init__(
        self,
        ctx: NodeContext,
        sock: socket.socket,
        peer: Peer,
        on_frame: FrameHandler,
        on_close: CloseHandler,
        *,
        max_frame: int = MAX_FRAME,
        max_buffered: int = 1024 * 1024,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.peer = peer
        self.agent = Agent(key=sock.fileno(), uid=peer.uid, pid=peer.pid, start_time=peer.start_time)
        self.max_frame = max_frame
        self.max_buffered = max_buffered
        self.hello_timer: TimerHandle | None = None
        self._reader = framing.FrameReader(min(HANDSHAKE_FRAME, max_frame))
        self._out = bytearray()
        self._closed = False
        self._events = 0
        self._on_frame = on_frame
        self._on_close = on_close
        self._rewatch()

    @property
    def closed(self) -> bool:
        """True once the connection is gone (frames after that are ignored)."""
        return self._closed

    @property
    def queued(self) -> int:
        """Bytes waiting to be written to the agent."""
        return len(self._out)

    def welcomed(self) -> None:
        """The agent passed its checks: full-size frames from now on, no hello deadline."""
        self._reader.max_frame = self.max_frame
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None

    def send(self, type_: str, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        """Queue one frame and write what the socket takes now."""
        if self._closed:
            return
        frame = framing.encode(type_, body, blobs)
        if self._out and len(self._out) + len(frame) > self.max_buffered + self.max_frame:
            self.ctx.count("session.agent_not_reading")
            self.close("agent is not reading (outbound queue full)")
            return
        had_backlog = bool(self._out)
        self._out += frame
        if not had_backlog:
            self._flush()
        else:
            self._rewatch()

    def discard_output(self) -> None:
        """Drop unsent frames (before a reject: the agent must see the reason first)."""
        self._out.clear()

    def close(self, reason: str) -> None:
        """Close once and tell the gateway."""
        if self._closed:
            return
        self._closed = True
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        self.ctx.unwatch_fd(self.agent.key)
        self.sock.close()
        self._out = bytearray()
        self._on_close(self, reason)

    def _rewatch(self) -> None:
        """Watch for what we can do: read unless the queue is over its limit, write if queued."""
        if self._closed:
            return
        events = (POLLIN if len(self._out) <= self.max_buffered else 0) | (POLLOUT if self._out else 0)
        if events != self._events:
            self._events = events
            self.ctx.unwatch_fd(self.agent.key)
            self.ctx.watch_fd(self.agent.key, self._io, events)

    def _flush(self) -> None:
        try:
            while self._out:
                del self._out[: self.sock.send(self._out, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)]
        except BlockingIOError:
            pass
        except OSError:
            self.close("agent write failed")
            return
        self._rewatch()

    def _io(self, revents: int) -> None:
        """fd callback: nothing may escape it (the bridge loop is shared by every user)."""
        try:
            if revents & POLLOUT and self._out:
                self._flush()
                if not self._closed and len(self._out) <= self.max_buffered and self._reader.buffered:
                    self._process(b"")  # frames held back while the queue was full
            if self._closed:
                return
            if self._events & POLLIN and revents & ~POLLOUT:
                self._readable()
            elif revents & _GONE:
                self.close("agent disconnected")
        except Exception as err:  # boundary: one connection, never the actor
            self.ctx.count("session.conn_failed")
            log.exception("agent connection failed: %s", type(err).__name__, extra={"event": "session.conn_failed"})
            self.close("internal error")

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close("agent disconnected")
            return
        self._process(data)

    def _process(self, data: bytes) -> None:
        """Hand whole frames to the gateway until the outbound queue passes its limit.

        What is left stays in the reader (at most one READ_CHUNK) until the queue drains, so a
        peer that floods requests without reading answers gets at most one answer past the limit.
        """
        try:
            for type_, body, blobs in self._reader.feed(data):
                self._on_frame(self, type_, body, blobs)
                if self._closed or len(self._out) > self.max_buffered:
                    return
        except ProtocolError as err:
            self._on_frame(self, "protocol_error", str(err), ())
