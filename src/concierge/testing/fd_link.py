"""Test glue: a HostLink over a plain fd (pty slave, socket) and a node hosting one front-end.

Stands in for the transport actor's channels (built by another helper) so a front-end can be
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
import threading
from typing import Any

from concierge.actors.node import Incoming, Node


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
    """Runs one front-end over ``settings["fd"]`` (the fd is owned by the test)."""

    def start(self) -> None:
        """Build the link and front-end, start the reader thread, announce the host."""
        settings = dict(self.ctx.settings)
        self.fd = int(settings.pop("fd"))
        module, _, cls = str(settings.pop("frontend")).partition(":")
        self.stopping = threading.Event()
        self.link = FdLink(str(settings.pop("name", "ovirt")), self.fd)
        self.frontend: Any = getattr(importlib.import_module(module), cls)(
            self.ctx, self.link, settings
        )
        self.link.set_connected(True)
        self.frontend.connected()
        self.reader = threading.Thread(target=self._read, daemon=True, name="fd-link-reader")
        self.reader.start()

    def _read(self) -> None:
        while not self.stopping.is_set():
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                self.ctx.call_soon(self._host_gone)
                return
            self.ctx.call_soon(functools.partial(self._deliver, data))

    def _deliver(self, data: bytes) -> None:
        if not self.stopping.is_set():
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
        """Close the front-end (the test closes the fd)."""
        self.stopping.set()
        self.frontend.close()
