"""Port channels: ``virtio-serial`` and ``isa-serial`` (one fd, the stream outlives host clients).

virtio-serial semantics (reference/virtio-serial.md): without a host process ``poll`` reports
POLLHUP and ``read`` returns EOF. We then stop watching the fd and look again on a timer (about
5 times a second, never a busy loop), instead of qemu-ga's 100 ms sleep inside its main loop.
EBUSY / ENOENT on open and a vanished device (hot-unplug) are retried with exponential backoff.
isa-serial opens the tty with pyserial (raw, 38400 baud, pending input flushed), imported lazily.
Runs on the bridge thread only. Must not import front-ends or zmq.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
from collections.abc import Callable
from typing import Any

from concierge.runtime.node import NodeContext, TimerHandle
from concierge.transport.host.api import FrontEnd
from concierge.transport.host.channel import ChannelSpec, MakeFrontEnd, OnState
from concierge.transport.host.stream import DEFAULT_HIGH_WATERMARK, DEFAULT_MAX_BUFFER, StreamLink, deliver

log = logging.getLogger(__name__)

_DEAD = select.POLLERR | select.POLLNVAL
#: protocols whose port is held open only while the front-end wants it (``PortGate``): SPICE,
#: where an open port switches spice-server to client mouse mode, useless without a session
GATED_PROTOCOLS = frozenset({"spice"})


class GatedLink(StreamLink):
    """A stream link whose front-end decides when the port is open (see ``PortGate`` in
    ``transport/spice/frontend.py``); the channel does the opening and closing."""

    def __init__(self, *args: Any, on_wanted: Callable[[bool], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_wanted = on_wanted

    def set_wanted(self, wanted: bool) -> None:
        """Open (True) or release (False) the port."""
        self._on_wanted(wanted)


class PortChannel:
    """A virtio-serial or isa-serial port: one long-lived fd, one front-end."""

    def __init__(
        self,
        ctx: NodeContext,
        spec: ChannelSpec,
        make_frontend: MakeFrontEnd,
        on_state: OnState,
        *,
        recheck_s: float = 0.2,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        high_watermark: int = DEFAULT_HIGH_WATERMARK,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.recheck_s = recheck_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._backoff = backoff_min_s
        self._make_frontend = make_frontend
        self._on_state = on_state
        self.gated = spec.protocol in GATED_PROTOCOLS
        self.wanted = not self.gated
        self.link: StreamLink
        if self.gated:
            self.link = GatedLink(
                ctx,
                spec.name,
                on_ready=self._ready,
                on_overflow=self._overflow,
                max_buffer=max_buffer,
                high_watermark=high_watermark,
                on_wanted=self.set_wanted,
            )
        else:
            self.link = StreamLink(
                ctx,
                spec.name,
                on_ready=self._ready,
                on_overflow=self._overflow,
                max_buffer=max_buffer,
                high_watermark=high_watermark,
            )
        self.frontend: FrontEnd | None = None
        self._serial: Any = None
        self._rdev: int | None = None
        self._timer: TimerHandle | None = None
        self._last_error = ""
        self.opens = 0
        self.rechecks = 0
        self.stopped = False

    # ------------------------------------------------------------------ Channel protocol
    @property
    def attached(self) -> bool:
        """True while a host is attached to the port."""
        return self.link.attached

    def start(self) -> None:
        """Open the port now or retry later; a gated port waits for its front-end's word (the
        front-end exists from the start so that it hears the session events that decide)."""
        if self.gated:
            self.frontend = self._make_frontend(self.link)
            log.info(
                "%s stays closed until a session agent is ready", self.spec.path, extra={"event": "host.port_gated"}
            )
            return
        self._try_open()

    def set_wanted(self, wanted: bool) -> None:
        """Open the port (True) or close it and stop retrying (False)."""
        if wanted == self.wanted or self.stopped:
            return
        self.wanted = wanted
        self._cancel_timer()
        if wanted:
            if self.link.fd < 0:
                self._try_open()
            return
        log.info("closing %s: no session agent", self.spec.path, extra={"event": "host.port_released"})
        self._close_fd()

    def stop(self) -> None:
        """Close the port and cancel timers."""
        self.stopped = True
        self._cancel_timer()
        self._close_fd()
        if self.frontend is not None:
            self.frontend.close()

    def frontends(self) -> list[Any]:
        """The port's front-end (it survives host reconnects)."""
        return [self.frontend] if self.frontend is not None else []

    def status(self) -> dict[str, Any]:
        """Health detail."""
        return {
            "method": self.spec.method,
            "path": self.spec.path,
            "open": self.link.fd >= 0,
            "wanted": self.wanted,
            "attached": self.attached,
            "error": self._last_error,
        }

    # ------------------------------------------------------------------ open / close
    def _open(self) -> int:
        if self.spec.method == "isa-serial":
            import serial  # noqa: PLC0415 - pyserial only when an isa-serial port is configured

            port = serial.Serial(self.spec.path, baudrate=38400, timeout=0, exclusive=True)
            port.reset_input_buffer()
            self._serial = port
            fd = int(port.fileno())
            os.set_blocking(fd, False)
            return fd
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        return os.open(self.spec.path, flags)

    def _try_open(self) -> None:
        self._timer = None
        if self.stopped or not self.wanted:
            return
        try:
            fd = self._open()
        except (OSError, ValueError) as err:  # pyserial raises SerialException(IOError)
            self._retry_open(err)
            return
        self.opens += 1
        self._backoff = self.backoff_min_s
        self._last_error = ""
        try:
            self._rdev = os.fstat(fd).st_rdev
        except OSError:
            self._rdev = None
        log.info("opened %s (%s)", self.spec.path, self.spec.name, extra={"event": "host.port_open"})
        self.link.bind(fd)
        if self.frontend is None:
            self.frontend = self._make_frontend(self.link)
        self._probe()

    def _retry_open(self, err: BaseException) -> None:
        text = f"{type(err).__name__}: {err}"
        if text != self._last_error:
            level = logging.INFO if getattr(err, "errno", None) in (errno.ENOENT, errno.EBUSY) else logging.WARNING
            log.log(
                level,
                "cannot open %s: %s; retrying",
                self.spec.path,
                err,
                extra={"event": "host.port_retry"},
            )
        self._last_error = text
        self.ctx.count("host.open_failures")
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        self._timer = self.ctx.call_later(delay, self._try_open)

    def _close_fd(self) -> None:
        self._set_attached(False)
        self.link.unwatch()
        if self._serial is not None:
            with contextlib.suppress(OSError):
                self._serial.close()
            self._serial = None
        elif self.link.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.link.fd)
        self.link.fd = -1

    def _lost(self, reason: str) -> None:
        """The device failed or vanished (hot-unplug): close it and reopen with backoff."""
        log.info("port %s lost: %s", self.spec.path, reason, extra={"event": "host.port_lost"})
        self._cancel_timer()
        self._close_fd()
        self._last_error = reason
        self._timer = self.ctx.call_later(self._backoff, self._try_open)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ host presence
    def _poll_now(self) -> int:
        poller = select.poll()
        poller.register(self.link.fd, select.POLLIN | select.POLLOUT)
        events = poller.poll(0)
        return events[0][1] if events else 0

    def _probe(self) -> None:
        """Decide whether a host is attached right after opening or on a recheck."""
        if self.link.fd < 0:
            return
        revents = self._poll_now()
        if revents & select.POLLNVAL:
            self._lost("invalid fd")
            return
        if revents & select.POLLHUP:
            self._no_host()
            return
        self._set_attached(True)
        self.link.watch()

    def _no_host(self) -> None:
        self.link.unwatch()
        self._set_attached(False)
        self._cancel_timer()
        self._timer = self.ctx.call_later(self.recheck_s, self._recheck)

    def _recheck(self) -> None:
        self._timer = None
        if self.stopped or self.link.fd < 0:
            return
        self.rechecks += 1
        try:
            rdev = os.stat(self.spec.path).st_rdev
        except OSError:
            rdev = None
        if rdev != self._rdev:
            self._lost("device replaced or removed")
            return
        self._probe()

    def _set_attached(self, attached: bool) -> None:
        if attached == self.link.attached:
            return
        self.link.attached = attached
        if not attached:
            self.link.drop_output()
        if self.frontend is not None:
            if attached:
                self.frontend.connected()
            else:
                self.frontend.disconnected()
        self._on_state(self, attached)

    # ------------------------------------------------------------------ I/O
    def _ready(self, revents: int) -> None:
        # revents is only a hint: bridges differ in flag encoding (select vs zmq), so every
        # wake-up flushes pending output and tries one non-blocking read
        del revents
        if self.link.fd < 0:
            return
        if self.link.has_output and not self.link.flush():
            self._lost("write failed")
            return
        try:
            data = self.link.read()
        except OSError as err:
            if err.errno == errno.EIO:
                self._no_host()  # a hung-up tty: wait for the device to come back
            else:
                self._lost(str(err))
            return
        if data is None:
            return
        if not data:
            self._no_host()
            return
        if not self.link.attached:
            self._set_attached(True)
        if self.frontend is not None and not deliver(self.ctx, self.spec.name, self.frontend, data):
            self.frontend.disconnected()  # start over from a clean parser
            self.frontend.connected()

    def _overflow(self) -> None:
        """The host stopped reading: drop what we had for it (the stream stays open)."""
        self.ctx.count("host.overflow_drops")
