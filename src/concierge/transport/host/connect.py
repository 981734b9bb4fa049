"""``unix-connect``: the agent connects to a socket the host side listens on, and reconnects.

Useful behind socket-based chardevs and in tests. A refused or dropped connection is retried
with exponential backoff. Runs on the bridge thread only. Must not import front-ends or zmq.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from concierge.runtime.node import NodeContext, TimerHandle
from concierge.transport.host.channel import ChannelSpec, MakeFrontEnd, OnState
from concierge.transport.host.listen import StreamClient
from concierge.transport.host.stream import DEFAULT_HIGH_WATERMARK, DEFAULT_MAX_BUFFER

log = logging.getLogger(__name__)


class ConnectChannel:
    """One outgoing unix stream connection, re-established when it drops."""

    def __init__(
        self,
        ctx: NodeContext,
        spec: ChannelSpec,
        make_frontend: MakeFrontEnd,
        on_state: OnState,
        *,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        high_watermark: int = DEFAULT_HIGH_WATERMARK,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.make_frontend = make_frontend
        self.max_buffer = max_buffer
        self.high_watermark = high_watermark
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._backoff = backoff_min_s
        self._on_state = on_state
        self.client: StreamClient | None = None
        self._timer: TimerHandle | None = None
        self._last_error = ""
        self.stopped = False

    @property
    def attached(self) -> bool:
        """True while connected."""
        return self.client is not None

    def start(self) -> None:
        """Connect now or retry later."""
        self._try_connect()

    def _try_connect(self) -> None:
        self._timer = None
        if self.stopped:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.spec.path)
        except OSError as err:
            sock.close()
            if str(err) != self._last_error:
                log.info(
                    "cannot connect to %s: %s; retrying",
                    self.spec.path,
                    err,
                    extra={"event": "host.connect_retry"},
                )
            self._last_error = str(err)
            self._schedule()
            return
        self._backoff = self.backoff_min_s
        self._last_error = ""
        self.client = StreamClient(self, sock, self.max_buffer, self.high_watermark)
        self._on_state(self, True)

    def _schedule(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        self._timer = self.ctx.call_later(delay, self._try_connect)

    def client_gone(self, client: StreamClient) -> None:
        """The connection dropped: report it and reconnect later."""
        if client is self.client:
            self.client = None
            if not self.stopped:
                self._on_state(self, False)
                self._schedule()

    def stop(self) -> None:
        """Close the connection."""
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self.client is not None:
            self.client.close()

    def frontends(self) -> list[Any]:
        """The connection's front-end."""
        return [self.client.frontend] if self.client is not None else []

    def status(self) -> dict[str, Any]:
        """Health detail."""
        return {
            "method": self.spec.method,
            "path": self.spec.path,
            "attached": self.attached,
            "error": self._last_error,
        }
