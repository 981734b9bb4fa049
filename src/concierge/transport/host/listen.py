"""Listening channels: ``unix-listen`` and ``vsock-listen``, several hosts served at once.

qemu-ga serves one client at a time (the next waits in the backlog); here every accepted client
gets its own stream and its own front-end, so two management tools never serialise. A stale
socket file is replaced; anything else at the path is left alone. Bind failures are retried
with backoff. Runs on the bridge thread only. Must not import front-ends or zmq.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

from concierge.runtime.node import NodeContext, TimerHandle
from concierge.transport.host.api import FrontEnd
from concierge.transport.host.channel import ChannelSpec, MakeFrontEnd, OnState
from concierge.transport.host.stream import DEFAULT_HIGH_WATERMARK, DEFAULT_MAX_BUFFER, StreamLink, deliver

log = logging.getLogger(__name__)


def parse_vsock(path: str) -> tuple[int, int]:
    """``CID:PORT`` (CID may be -1 for any) -> a vsock address."""
    cid_text, sep, port_text = path.rpartition(":")
    if not sep:
        raise ValueError(f"vsock address must be CID:PORT, got {path!r}")
    cid = int(cid_text)
    return (socket.VMADDR_CID_ANY if cid < 0 else cid), int(port_text)


class StreamClient:
    """One connected socket with its own link and front-end."""

    def __init__(
        self, channel: Any, sock: socket.socket, max_buffer: int, high_watermark: int = DEFAULT_HIGH_WATERMARK
    ) -> None:
        self.channel = channel
        self.sock = sock
        sock.setblocking(False)
        self.link = StreamLink(
            channel.ctx,
            channel.spec.name,
            on_ready=self._ready,
            on_overflow=self.close,
            max_buffer=max_buffer,
            high_watermark=high_watermark,
        )
        self.link.attached = True
        self.link.bind(sock.fileno())
        self.frontend: FrontEnd = channel.make_frontend(self.link)
        self.closed = False
        self.frontend.connected()

    def _ready(self, revents: int) -> None:
        # revents is only a hint (see PortChannel._ready): flush, then one non-blocking read
        del revents
        if self.closed:
            return
        if self.link.has_output and not self.link.flush():
            self.close()
            return
        try:
            data = self.link.read()
        except OSError:
            self.close()
            return
        if data is None:
            return
        if not data:
            self.close()
            return
        if not deliver(self.channel.ctx, self.channel.spec.name, self.frontend, data):
            self.close()

    def close(self) -> None:
        """Drop the client: pending output is lost, the front-end forgets it."""
        if self.closed:
            return
        self.closed = True
        self.link.unwatch()
        self.link.attached = False
        self.link.drop_output()
        self.frontend.disconnected()
        self.frontend.close()
        self.sock.close()
        self.link.fd = -1
        self.channel.client_gone(self)


class ListenChannel:
    """A listening unix or vsock socket; each accepted client is an independent host."""

    def __init__(
        self,
        ctx: NodeContext,
        spec: ChannelSpec,
        make_frontend: MakeFrontEnd,
        on_state: OnState,
        *,
        max_clients: int = 16,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        high_watermark: int = DEFAULT_HIGH_WATERMARK,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.make_frontend = make_frontend
        self.max_clients = max_clients
        self.max_buffer = max_buffer
        self.high_watermark = high_watermark
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._backoff = backoff_min_s
        self._on_state = on_state
        self.sock: socket.socket | None = None
        self.clients: list[StreamClient] = []
        self._timer: TimerHandle | None = None
        self._last_error = ""
        self.stopped = False

    @property
    def attached(self) -> bool:
        """True while at least one client is connected."""
        return bool(self.clients)

    def start(self) -> None:
        """Bind now or retry later."""
        self._try_bind()

    def _try_bind(self) -> None:
        self._timer = None
        if self.stopped:
            return
        try:
            self.sock = self._bind()
        except (OSError, ValueError) as err:
            text = f"{type(err).__name__}: {err}"
            if text != self._last_error:
                log.warning(
                    "cannot listen on %s: %s; retrying",
                    self.spec.path,
                    err,
                    extra={"event": "host.listen_retry"},
                )
            self._last_error = text
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self.backoff_max_s)
            self._timer = self.ctx.call_later(delay, self._try_bind)
            return
        self._last_error = ""
        self.ctx.watch_fd(self.sock.fileno(), self._accept)
        log.info(
            "listening on %s (%s)",
            self.spec.path,
            self.spec.name,
            extra={"event": "host.listening"},
        )

    def _bind(self) -> socket.socket:
        if self.spec.method == "vsock-listen":
            sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            try:
                sock.bind(parse_vsock(self.spec.path))
            except OSError:
                sock.close()
                raise
        else:
            path = Path(self.spec.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # a stale socket from a previous run
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(path))
            except OSError:
                sock.close()
                raise
        sock.setblocking(False)
        sock.listen(16)
        return sock

    def _accept(self, revents: int) -> None:
        del revents
        if self.sock is None:
            return
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning(
                    "accept on %s failed: %s",
                    self.spec.path,
                    err,
                    extra={"event": "host.accept_failed"},
                )
                return
            if len(self.clients) >= self.max_clients:
                self.ctx.count("host.clients_refused")
                conn.close()
                continue
            self.ctx.count("host.clients_accepted")
            was_attached = self.attached
            self.clients.append(StreamClient(self, conn, self.max_buffer, self.high_watermark))
            if not was_attached:
                self._on_state(self, True)

    def client_gone(self, client: StreamClient) -> None:
        """A client closed (called by :class:`StreamClient`)."""
        if client in self.clients:
            self.clients.remove(client)
            if not self.clients and not self.stopped:
                self._on_state(self, False)

    def stop(self) -> None:
        """Close clients and the listening socket; the socket file is removed."""
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for client in list(self.clients):
            client.close()
        if self.sock is not None:
            self.ctx.unwatch_fd(self.sock.fileno())
            self.sock.close()
            self.sock = None
            if self.spec.method == "unix-listen":
                with contextlib.suppress(OSError):
                    os.unlink(self.spec.path)

    def frontends(self) -> list[Any]:
        """Front-ends of connected clients."""
        return [client.frontend for client in self.clients]

    def status(self) -> dict[str, Any]:
        """Health detail."""
        return {
            "method": self.spec.method,
            "path": self.spec.path,
            "open": self.sock is not None,
            "attached": self.attached,
            "clients": len(self.clients),
            "error": self._last_error,
        }
