"""One attached session process as the gateway sees it: a non-blocking framed unix stream.

Reads and writes on the bridge thread through ``ctx.watch_fd``; a slow agent only grows its own
output buffer. Must not import zmq.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from concierge.actors.session import framing
from concierge.actors.session.arbiter import Agent
from concierge.actors.session.identity import Peer
from concierge.errors import ProtocolError
from concierge.runtime.node import POLLIN, POLLOUT, NodeContext

FrameHandler = Callable[["AgentConn", str, Any, tuple[bytes, ...]], None]
CloseHandler = Callable[["AgentConn", str], None]


class AgentConn:
    """The socket, credentials and policy record of one agent."""

    def __init__(
        self,
        ctx: NodeContext,
        sock: socket.socket,
        peer: Peer,
        on_frame: FrameHandler,
        on_close: CloseHandler,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.peer = peer
        self.agent = Agent(key=sock.fileno(), uid=peer.uid, pid=peer.pid, start_time=peer.start_time)
        self._reader = framing.FrameReader()
        self._out = bytearray()
        self._closed = False
        self._on_frame = on_frame
        self._on_close = on_close
        ctx.watch_fd(self.agent.key, self._io, POLLIN)

    @property
    def closed(self) -> bool:
        """True once the connection is gone (frames after that are ignored)."""
        return self._closed

    def send(self, type_: str, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        """Queue one frame and write what the socket takes now."""
        if self._closed:
            return
        had_backlog = bool(self._out)
        self._out += framing.encode(type_, body, blobs)
        if not had_backlog:
            self._flush()

    def discard_output(self) -> None:
        """Drop unsent frames (before a reject: the agent must see the reason first)."""
        self._out.clear()

    def close(self, reason: str) -> None:
        """Close once and tell the gateway."""
        if self._closed:
            return
        self._closed = True
        self.ctx.unwatch_fd(self.agent.key)
        self.sock.close()
        self._on_close(self, reason)

    def _flush(self) -> None:
        try:
            while self._out:
                del self._out[: self.sock.send(self._out)]
        except BlockingIOError:
            pass
        except OSError:
            self.close("agent write failed")
            return
        self.ctx.unwatch_fd(self.agent.key)
        self.ctx.watch_fd(self.agent.key, self._io, POLLIN | POLLOUT if self._out else POLLIN)

    def _io(self, revents: int) -> None:
        if revents & POLLOUT and self._out:
            self._flush()
        if revents & ~POLLOUT and not self._closed:
            self._readable()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close("agent disconnected")
            return
        try:
            for type_, body, blobs in self._reader.feed(data):
                self._on_frame(self, type_, body, blobs)
                if self._closed:
                    return
        except ProtocolError as err:
            self._on_frame(self, "protocol_error", str(err), ())
