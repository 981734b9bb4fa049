"""A SPICE host simulator (spice-server + spice-gtk as the guest sees them) and a test link node.

:class:`SpiceHost` frames messages exactly like the real host (<= 2048-byte chunks, MOUSE_STATE
and CLIENT_DISCONNECTED on the server port, client messages on port 1) over one end of a unix
socket pair or a raw pty, and decodes what the guest sends. :class:`LinkNode` is a minimal
stand-in for the transport actor: it owns the guest end of that channel, feeds a real
:class:`SpiceFrontEnd` and routes ``spice.*`` casts to it. Test and benchmark support only.
"""

from __future__ import annotations

import errno
import os
import pty
import select
import socket
import termios
import time
import tty
from collections import deque
from typing import Any

from concierge.runtime.node import POLLIN, POLLOUT, Incoming, Node, NodeContext
from concierge.transport.spice import codec
from concierge.transport.spice.codec import Layout
from concierge.transport.spice.frontend import SpiceFrontEnd
from concierge.transport.spice.wire import (
    CLIENT_PORT,
    MOUSE_STATE_STRUCT,
    SERVER_PORT,
    Cap,
    MsgType,
    Reassembler,
    caps_to_words,
    frame,
)

#: what spice-gtk announces (spice.md 1.3)
SPICE_GTK_CAPS = frozenset(
    {
        Cap.MOUSE_STATE,
        Cap.MONITORS_CONFIG,
        Cap.REPLY,
        Cap.DISPLAY_CONFIG,
        Cap.CLIPBOARD_BY_DEMAND,
        Cap.CLIPBOARD_SELECTION,
        Cap.MONITORS_CONFIG_POSITION,
        Cap.FILE_XFER_DETAILED_ERRORS,
        Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB,
        Cap.CLIPBOARD_GRAB_SERIAL,
    }
)


def unix_channel() -> tuple[int, int]:
    """(host fd, guest fd) of a unix stream socket pair (what the stock anchor used)."""
    host, guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return host.detach(), guest.detach()


def pty_channel() -> tuple[int, int]:
    """(host fd, guest fd) of a raw pty (the isa-serial / virtio console stand-in)."""
    master, slave = pty.openpty()
    for fd in (master, slave):
        tty.setraw(fd, termios.TCSANOW)
    return master, slave


class SpiceHost:
    """The host end: sends framed messages, reads and decodes the guest's."""

    def __init__(self, fd: int, client_caps: frozenset[int] = SPICE_GTK_CAPS) -> None:
        self.fd = fd
        self.client_caps = client_caps
        self.layout = Layout.from_caps(client_caps)
        self._rx = Reassembler(max_chunk=1 << 30)  # the host accepts any guest chunk size
        self._queue: deque[tuple[int, MsgType, dict[str, Any], bytes | None]] = deque()

    def write(self, data: bytes) -> None:
        """Write all bytes (blocking)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], 1)
                continue
            view = view[n:]

    def send(self, kind: MsgType, body: dict[str, Any], blob: bytes = b"", port: int = CLIENT_PORT) -> None:
        """Encode with the client's layout and write as <= 2048-byte chunks."""
        self.write(frame(port, kind, codec.encode(kind, body, self.layout, blob)))

    def mouse(self, x: int, y: int, buttons: int = 0, display_id: int = 0) -> None:
        """One MOUSE_STATE from the server (port 2)."""
        self.write(frame(SERVER_PORT, MsgType.MOUSE_STATE, MOUSE_STATE_STRUCT.pack(x, y, buttons, display_id)))

    def announce(self, request: int = 0) -> None:
        """Send the client's capabilities."""
        self.send(
            MsgType.ANNOUNCE_CAPABILITIES,
            {"request": request, "caps": caps_to_words(set(self.client_caps))},
        )

    def read(self, timeout_s: float = 5.0) -> tuple[int, MsgType, dict[str, Any], bytes | None]:
        """The next guest message as (port, kind, body, blob); TimeoutError if none."""
        deadline = time.monotonic() + timeout_s
        while not self._queue:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError("no message from the guest")
            try:
                data = os.read(self.fd, 65536)
            except OSError as err:
                if err.errno == errno.EIO:  # pty peer closed
                    raise EOFError("guest closed the channel") from err
                raise
            if not data:
                raise EOFError("guest closed the channel")
            for raw in self._rx.feed(data):
                kind, body, blob = codec.decode(raw.type, raw.payload, self.layout)
                self._queue.append((raw.port, kind, body, blob))
        return self._queue.popleft()

    def handshake(self) -> dict[str, Any]:
        """Answer the guest's request=1 announce like spice-gtk; return the guest's caps body."""
        _, kind, body, _ = self.read()
        if kind is not MsgType.ANNOUNCE_CAPABILITIES:
            raise AssertionError(f"expected ANNOUNCE_CAPABILITIES, got {kind.name}")
        if body["request"]:
            self.announce(request=0)
        return body


class _FdLink:
    """HostLink over a connected fd with a non-blocking write queue."""

    def __init__(self, name: str, fd: int, ctx: NodeContext, on_error: Any) -> None:
        self.name = name
        self.fd = fd
        self.ctx = ctx
        self.out = bytearray()
        self.is_connected = True
        self._on_error = on_error

    @property
    def connected(self) -> bool:
        return self.is_connected

    def write(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        try:
            while self.out:
                del self.out[: os.write(self.fd, self.out)]
        except BlockingIOError:
            pass
        except OSError:
            self._on_error()


class LinkNode(Node):
    """Test transport actor: settings ``{"fd": guest_fd, "name": "spice"}`` + front-end settings."""

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.fd = int(ctx.settings["fd"])
        os.set_blocking(self.fd, False)
        self.link = _FdLink(str(ctx.settings.get("name", "spice")), self.fd, ctx, self._gone)
        self.frontend = SpiceFrontEnd(ctx, self.link, ctx.settings)

    def start(self) -> None:
        """Watch the channel and greet the host."""
        self.ctx.watch_fd(self.fd, self._io, POLLIN)
        self.frontend.connected()

    def _io(self, revents: int) -> None:
        if revents & POLLOUT:
            self.link.flush()
            self._rewatch()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone()
            return
        self.frontend.received(data)

    def _gone(self) -> None:
        if self.link.is_connected:
            self.link.is_connected = False
            self.ctx.unwatch_fd(self.fd)
            self.frontend.disconnected()

    def handle(self, msg: Incoming) -> None:
        """Events go to ``frontend.event``, ``spice.send`` casts to ``frontend.deliver``."""
        if msg.kind == "evt":
            self.frontend.event(msg.type, msg.body)
        elif not self.frontend.deliver(msg):
            super().handle(msg)
        self._rewatch()

    def _rewatch(self) -> None:
        """Wait for room to write while output is pending (a large message exceeds the
        socket buffer; the real transport's StreamLink does the same)."""
        if self.link.is_connected:
            self.ctx.watch_fd(self.fd, self._io, POLLIN | (POLLOUT if self.link.out else 0))

    def stop(self) -> None:
        """Close the channel."""
        self.frontend.close()
        self.ctx.unwatch_fd(self.fd)
        os.close(self.fd)
