"""StreamLink: one open byte stream to a host (a virtio/serial port fd or one socket client).

It is the :class:`~concierge.transport.host.api.HostLink` a front-end writes to: writes are
attempted at once, the rest is buffered and completed in order when the fd reports POLLOUT.
Two kinds of output share one ordered queue:

- ``write(data)``: small messages, copied into the buffer; bytes held this way are bounded by
  ``max_buffer`` (a host that does not read loses its connection's output, never our memory);
- ``write_stream(chunks)``: a large reply produced piece by piece. Pieces are pulled only while
  less than ``high_watermark`` bytes wait for the fd, so a reply of any size the limits allow is
  delivered while at most about ``high_watermark`` of it is ever copied here (back-pressure:
  the producer is not asked for more until the host has read what it got).

On disconnect queued output is dropped so a returning host never sees half a message. Reading
and connection state belong to the channel that owns the link. Runs on the bridge thread only.
Must not import front-ends or zmq.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import deque
from collections.abc import Callable, Generator

from concierge.memtrim import trim_soon
from concierge.runtime.node import POLLIN, POLLOUT, NodeContext, TimerHandle
from concierge.transport.host.api import FrontEnd

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
DEFAULT_MAX_BUFFER = 16 << 20
DEFAULT_HIGH_WATERMARK = 1 << 20
RETRY_FLUSH_S = 0.05
#: a stream at least this long leaves freed heap behind: return it to the system afterwards
TRIM_AFTER_BYTES = 4 << 20

#: a large message, piece by piece (a generator, so queued output can be closed when dropped)
Chunks = Generator[bytes, None, None]


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
        high_watermark: int = DEFAULT_HIGH_WATERMARK,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.fd = -1
        self.attached = False
        self.max_buffer = max_buffer
        self.high_watermark = high_watermark
        self._out = bytearray()  # bytes the fd takes next
        self._queue: deque[bytes | Chunks] = deque()  # output behind a stream, in order
        self._queued = 0  # bytes of ``write`` data in ``_queue``
        self._streamed = 0  # bytes pulled from the stream at the head of ``_queue``
        self._idle_callbacks: list[Callable[[], None]] = []
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
        """Bytes copied here and waiting for the fd (streams count what was pulled so far)."""
        return len(self._out) + self._queued

    @property
    def has_output(self) -> bool:
        """True while anything (bytes or a stream) waits for the fd."""
        return bool(self._out or self._queue)

    def bind(self, fd: int) -> None:
        """Use ``fd`` (already non-blocking) and watch it for input."""
        self.fd = fd
        self._clear()
        self.watch()

    def watch(self) -> None:
        """Watch for input, and for output room while output is pending."""
        if self.fd < 0:
            return
        pending = self.has_output
        events = POLLIN | (POLLOUT if pending else 0)
        if events != self._watched:
            self.ctx.watch_fd(self.fd, self._on_ready, events)
            self._watched = events
        if pending and self._retry is None:
            # belt and braces: complete buffered writes even if POLLOUT is never reported
            self._retry = self.ctx.call_later(RETRY_FLUSH_S, self._retry_flush)

    def _retry_flush(self) -> None:
        self._retry = None
        if self.fd >= 0 and self.has_output:
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
        """Forget queued output (the host went away)."""
        if self.has_output:
            self.ctx.count("host.dropped_bytes", self.buffered)
            self._clear()
        if self._watched:
            self.watch()

    def _clear(self) -> None:
        self._out.clear()
        for item in self._queue:
            if not isinstance(item, bytes):
                item.close()
        self._queue.clear()
        self._queued = 0
        self._streamed = 0
        self._notify_idle()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, on the bridge thread) when no output is pending any more:
        at once if none is, else after the last byte was written or dropped."""
        if not self.has_output:
            callback()
        else:
            self._idle_callbacks.append(callback)

    def _notify_idle(self) -> None:
        callbacks, self._idle_callbacks = self._idle_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # loop boundary: a front-end bug must not stop the writer
                log.exception("idle callback of %s failed", self.name, extra={"event": "host.idle_callback_bug"})

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the host; never blocks. Dropped while no host is attached."""
        if not self.attached or self.fd < 0:
            self.ctx.count("host.dropped_bytes", len(data))
            return
        if not self.has_output:
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
        if self.buffered + len(data) > self.max_buffer:
            log.warning("output buffer of %s overflowed", self.name, extra={"event": "host.overflow"})
            self.ctx.count("host.overflows")
            self._clear()
            self._on_overflow()
            return
        if self._queue:
            self._queue.append(data)  # behind a stream: keep the order
            self._queued += len(data)
        else:
            self._out += data
        self.watch()

    def write_stream(self, chunks: Chunks) -> None:
        """Queue a large message produced piece by piece (see the module docstring)."""
        if not self.attached or self.fd < 0:
            self.ctx.count("host.dropped_streams")
            chunks.close()
            return
        self.ctx.count("host.streams")
        self._queue.append(chunks)
        if not self.flush():
            self.ctx.count("host.write_errors")  # the owner sees the failure on its next wake-up
        self.watch()

    def _refill(self) -> None:
        """Move queued output into ``_out`` until it reaches the high watermark."""
        queue = self._queue
        while queue and len(self._out) < self.high_watermark:
            head = queue[0]
            if isinstance(head, bytes):
                queue.popleft()
                self._queued -= len(head)
                self._out += head
                continue
            try:
                piece = next(head, None)
            except Exception:  # loop boundary: a broken producer costs its own message
                log.exception("stream producer of %s failed", self.name, extra={"event": "host.stream_bug"})
                self.ctx.count("host.stream_errors")
                piece = None
            if piece is None:
                queue.popleft()
                if self._streamed >= TRIM_AFTER_BYTES:
                    trim_soon(self.ctx)
                self._streamed = 0
                continue
            self._streamed += len(piece)
            self._out += piece

    def flush(self) -> bool:
        """Write pending output while the fd takes it; False when the fd failed."""
        while True:
            if len(self._out) < self.high_watermark:
                self._refill()
            if not self._out:
                break
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
        if not self.has_output:
            self._notify_idle()
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
