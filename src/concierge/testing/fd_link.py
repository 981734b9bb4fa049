"""Test glue: a HostLink over a plain fd (pty slave, socket) and a node hosting one front-end.

Stands in for the transport actor's channels (a component test needs no supervisor) so a front-end can be
driven end to end: ``FrontEndHostNode`` reads settings ``fd`` and ``frontend`` ("module:Class"),
watches the fd with a reader thread (FakeContext has no poll loop) and calls
connected/received/disconnected on the bridge thread. Events (``kind="evt"``) are forwarded to
the front-end's ``event(topic, body)``. Not for production use.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from concierge.runtime.node import Incoming, Node


class FdLink:
    """HostLink over one fd; writes complete short writes, dropped while disconnected."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd
        self._connected = False
        self.written = 0

    @property
    def connected(self) -> bool:
        """True while the host side is attached."""
        return self._connected

    def set_connected(self, value: bool) -> None:
        """Glue hook."""
        self._connected = value

    def write(self, data: bytes) -> None:
        """Write everything (test glue: a short blocking loop is acceptable here)."""
        if not self._connected:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError as err:
                if err.errno in (errno.EIO, errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                    return
                raise
            view = view[n:]
            self.written += n


class FrontEndHostNode(Node):
    """Runs one front-end over ``settings["fd"]`` or the connections accepted on
    ``settings["listen_fd"]`` (a listening unix socket: one host at a time, as QEMU's chardev).
    The fds are owned by the test.
    """

    def start(self) -> None:
        """Build the link and front-end, start the reader thread."""
        settings = dict(self.ctx.settings)
        fd = settings.pop("fd", None)
        listen_fd = settings.pop("listen_fd", None)
        module, _, cls = str(settings.pop("frontend")).partition(":")
        self.stopping = threading.Event()
        self.link = FdLink(str(settings.pop("name", "ovirt")), -1)
        self.frontend: Any = getattr(importlib.import_module(module), cls)(self.ctx, self.link, settings)
        if listen_fd is not None:
            target = functools.partial(self._serve, socket.socket(fileno=os.dup(int(listen_fd))))
        else:
            self._attach(int(fd))
            target = functools.partial(self._pump, int(fd))
        self.reader = threading.Thread(target=target, daemon=True, name="fd-link-reader")
        self.reader.start()

    def _attach(self, fd: int) -> None:
        self.link.fd = fd
        self.link.set_connected(True)
        self.frontend.connected()

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            while not self.stopping.is_set():
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                conn, _ = listener.accept()
                with conn:
                    self._on_bridge(functools.partial(self._attach, conn.fileno()))
                    self._pump(conn.fileno())
                    self._on_bridge(self._host_gone)

    def _on_bridge(self, func: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            func()
            done.set()

        self.ctx.call_soon(run)
        done.wait(5)

    def _pump(self, fd: int) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready or self.stopping.is_set():
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                self.ctx.call_soon(self._host_gone)
                return
            self.ctx.call_soon(functools.partial(self._deliver, data))

    def _deliver(self, data: bytes) -> None:
        if not self.stopping.is_set() and self.link.connected:
            self.frontend.received(data)

    def _host_gone(self) -> None:
        if self.link.connected and not self.stopping.is_set():
            self.link.set_connected(False)
            self.frontend.disconnected()

    def handle(self, msg: Incoming) -> None:
        """Forward events to the front-end."""
        if msg.kind == "evt":
            self.frontend.event(msg.type, msg.body)
        else:
            super().handle(msg)

    def stop(self) -> None:
        """Close the front-end and stop the reader (the test closes the fds)."""
        self.stopping.set()
        self.frontend.close()
        self.link.set_connected(False)
        # the test closes the fds next and the numbers get reused: the reader must be gone
        self.reader.join(1.0)
