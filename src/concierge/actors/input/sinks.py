"""Where tablet events go: a uinput device (evdev, imported lazily) or a raw file/FIFO sink.

Both take whole reports (``bytes`` of struct input_event) and never block: ``write`` returns
False when the reader is behind so the caller can keep the report and coalesce. Must not import
zmq or pykka.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any, Protocol

from concierge.actors.input.events import (
    ABS_X,
    ABS_Y,
    BTN_EXTRA,
    BTN_LEFT,
    BTN_MIDDLE,
    BTN_RIGHT,
    BTN_SIDE,
    EV_ABS,
    EV_KEY,
    EV_REL,
    REL_WHEEL,
)
from concierge.errors import ConfigError, UnavailableError
from concierge.optional import missing_dependency

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A destination for input_event records."""

    name: str

    def fileno(self) -> int | None:
        """The fd to watch for POLLOUT while behind (None when not open)."""
        ...

    def write(self, report: bytes) -> bool:
        """Write one report atomically; False if it would block (nothing written)."""
        ...

    def set_range(self, width: int, height: int) -> None:
        """The desktop bounding box changed: ABS ranges become 0..width-1 / 0..height-1."""
        ...

    def close(self) -> None:
        """Release the device or file."""
        ...


class FileSink:
    """Raw records to a path or FIFO (``spice-vdagentd -f`` equivalent); no ranges, no ioctls.

    A FIFO without a reader cannot be opened non-blocking (ENXIO): reports are then dropped (a
    mouse position nobody reads is stale anyway) and the open is retried on the next report.
    """

    def __init__(self, path: str) -> None:
        self.name = f"file:{path}"
        self.path = path
        self._fd: int | None = None
        self.reopen()

    def reopen(self) -> bool:
        """Try to open the path; True when open."""
        if self._fd is not None:
            return True
        try:
            self._fd = os.open(
                self.path,
                os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
        except OSError as err:
            if err.errno == errno.ENXIO:  # FIFO with no reader yet
                return False
            raise UnavailableError(f"input sink {self.path}: {err.strerror}") from err
        return True

    def fileno(self) -> int | None:
        """The open fd, if any."""
        return self._fd

    def write(self, report: bytes) -> bool:
        """Write one report (<= 9 x 24 bytes < PIPE_BUF, so a FIFO write is atomic)."""
        if self._fd is None and not self.reopen():
            return True  # no reader: dropped, not queued
        fd = self._fd
        if fd is None:
            return True
        try:
            os.write(fd, report)
        except BlockingIOError:
            return False
        except BrokenPipeError:
            self._close_fd()  # the reader went away; reopen when one comes back
        return True

    def set_range(self, width: int, height: int) -> None:
        """Raw records carry absolute values; a file has no range to change."""

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the file."""
        self._close_fd()


class UInputSink:
    """One absolute tablet through /dev/uinput, named like the stock one.

    A size change re-ranges the existing device with EVIOCSABS on its event node instead of the
    stock destroy-and-recreate (which makes compositors see an input hot-unplug per resize);
    when that fails the device is recreated.
    """

    def __init__(self, device_name: str, uinput_path: str, width: int = 1, height: int = 1) -> None:
        try:
            import evdev  # noqa: PLC0415 - optional dependency, only where uinput is used
        except ImportError as err:
            raise missing_dependency(err) or err from err
        self._evdev: Any = evdev
        self.name = "uinput"
        self.device_name = device_name
        self.uinput_path = uinput_path
        self._ui: Any = None
        self._create(width, height)

    def _create(self, width: int, height: int) -> None:
        evdev = self._evdev
        caps = {
            EV_KEY: [BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, BTN_EXTRA],
            EV_REL: [REL_WHEEL],
            EV_ABS: [
                (ABS_X, evdev.AbsInfo(0, 0, max(width - 1, 0), 0, 0, 0)),
                (ABS_Y, evdev.AbsInfo(0, 0, max(height - 1, 0), 0, 0, 0)),
            ],
        }
        try:
            # ids all zero, like the stock "spice vdagent tablet"
            self._ui = evdev.UInput(
                caps,
                name=self.device_name,
                vendor=0,
                product=0,
                version=0,
                bustype=0,
                devnode=self.uinput_path,
            )
        except (OSError, evdev.UInputError) as err:
            raise UnavailableError(f"cannot create the uinput tablet: {err}") from err

    def fileno(self) -> int | None:
        """The uinput fd."""
        return int(self._ui.fd) if self._ui is not None else None

    def write(self, report: bytes) -> bool:
        """uinput accepts raw input_event records on its fd."""
        try:
            os.write(self._ui.fd, report)
        except BlockingIOError:
            return False
        return True

    def set_range(self, width: int, height: int) -> None:
        """Re-range in place; recreate the device only if the kernel refuses."""
        evdev = self._evdev
        try:
            device = self._ui.device
            device.set_absinfo(ABS_X, min=0, max=max(width - 1, 0))
            device.set_absinfo(ABS_Y, min=0, max=max(height - 1, 0))
        except (OSError, AttributeError) as err:
            log.info(
                "re-range failed (%s): recreating the tablet",
                err,
                extra={"event": "input.recreate"},
            )
            self._ui.close()
            self._create(width, height)
        del evdev

    def close(self) -> None:
        """Destroy the device."""
        if self._ui is not None:
            self._ui.close()
            self._ui = None


def open_sink(spec: str, device_name: str, uinput_path: str) -> Sink:
    """Build the sink named by the ``sink`` setting."""
    if spec.startswith("file:") and len(spec) > 5:
        return FileSink(spec[5:])
    if spec == "uinput":
        return UInputSink(device_name, uinput_path)
    raise ConfigError(f"unknown sink {spec!r} (use 'uinput' or 'file:PATH')", key="actors.input.settings.sink")
