"""StreamLink: one open byte stream to a host (a virtio/serial port fd or one socket client).

It is the :class:`~concierge.transport.host.api.HostLink` a front-end writes to: writes are
attempted at once, the rest is buffered and completed in order when the fd reports POLLOUT;
the buffer is bounded; on disconnect buffered output is dropped so a returning host never sees
half a message. Reading and connection state belong to the channel that owns the link.
Runs on the bridge thread only. Must not import front-ends or zmq.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from concierge.runtime.node import POLLIN, POLLOUT, NodeContext, TimerHandle
from concierge.transport.host.api import FrontEnd

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
DEFAULT_MAX_BUFFER = 16 << 20
RETRY_FLUSH_S = 0.05


class StreamLink:
    """Buffered non-blocking writer over ``fd``; the owner handles readability."""

    def __init__(
        self,
        ctx: NodeContext,
        name: str,
        *,
        on_ready: Callable[[int], None],
        on_overflow: Callable[[], None],
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.fd = -1
        self.attached = False
        self.max_buffer = max_buffer
        self._out = bytearray()
        self._on_ready = on_ready
        self._on_overflow = on_overflow
        self._watched = 0
        self._retry: TimerHandle | None = None

    @property
    def connected(self) -> bool:
        """True while a host is attached to this stream."""
        return self.attached

    @property
    def buffered(self) -> int:
        """Bytes waiting for POLLOUT."""
        return len(self._out)

    def bind(self, fd: int) -> None:
        """Use ``fd`` (already non-blocking) and watch it for input."""
        self.fd = fd
        self._out.clear()
        self.watch()

    def watch(self) -> None:
        """Watch for input, and for output room while bytes are buffered."""
        if self.fd < 0:
            return
        events = POLLIN | (POLLOUT if self._out else 0)
        if events != self._watched:
            self.ctx.watch_fd(self.fd, self._on_ready, events)
            self._watched = events
        if self._out and self._retry is None:
            # belt and braces: complete buffered writes even if POLLOUT is never reported
            self._retry = self.ctx.call_later(RETRY_FLUSH_S, self._retry_flush)

    def _retry_flush(self) -> None:
        self._retry = None
        if self.fd >= 0 and self._out:
            self._on_ready(0)

    def unwatch(self) -> None:
        """Stop watching the fd (it stays open)."""
        if self.fd >= 0 and self._watched:
            self.ctx.unwatch_fd(self.fd)
        self._watched = 0
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def drop_output(self) -> None:
        """Forget buffered output (the host went away)."""
        if self._out:
            self.ctx.count("host.dropped_bytes", len(self._out))
            self._out.clear()
        if self._watched:
            self.watch()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the host; never blocks. Dropped while no host is attached."""
        if not self.attached or self.fd < 0:
            self.ctx.count("host.dropped_bytes", len(data))
            return
        if not self._out:
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as err:
                log.info("write to %s failed: %s", self.name, err, extra={"event": "host.write_failed"})
                self.ctx.count("host.write_errors")
                return
            if sent == len(data):
                return
            data = data[sent:]
        if len(self._out) + len(data) > self.max_buffer:
            log.warning("output buffer of %s overflowed", self.name, extra={"event": "host.overflow"})
            self.ctx.count("host.overflows")
            self._out.clear()
            self._on_overflow()
            return
        self._out += data
        self.watch()

    def flush(self) -> bool:
        """Write buffered bytes after POLLOUT; False when the fd failed."""
        while self._out:
            try:
                sent = os.write(self.fd, self._out)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                return False
            if sent <= 0:
                break
            del self._out[:sent]
        self.watch()
        return True

    def read(self) -> bytes | None:
        """Read what is available: bytes, ``b""`` on EOF, None when nothing is ready."""
        try:
            return os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None


def deliver(ctx: NodeContext, name: str, frontend: FrontEnd, data: bytes) -> bool:
    """Hand host bytes to a front-end; False (after logging) if the front-end crashed.

    This is the loop boundary of a channel: a front-end bug must cost one connection's state,
    never the transport actor and its other channels.
    """
    ctx.count("host.rx_bytes", len(data))
    try:
        frontend.received(data)
    except Exception:  # loop boundary: isolate front-end bugs per channel
        log.exception("front-end of %s failed", name, extra={"event": "host.frontend_crash"})
        ctx.count("host.frontend_crashes")
        return False
    return True
