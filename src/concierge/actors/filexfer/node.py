"""FileXferNode: receives SPICE file transfers into the user's download directory.

Runs as the user. File I/O happens in the ServiceNode actor thread, never on the bridge.
Files are created with O_EXCL|O_NOFOLLOW relative to an fd of the directory, so a name can
neither escape it nor replace an existing file; partial files are removed on cancel, error,
client disconnect and stop. Must not import X11, Wayland or D-Bus code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

import msgspec

from concierge.actors.filexfer.names import (
    UnsafeNameError,
    candidates,
    download_dir,
    parse_keyfile,
    safe_name,
)
from concierge.actors.filexfer.settings import FileXferSettings
from concierge.actors.vdagent import Cap, XferResult, caps_from_body, has_cap, send
from concierge.errors import ConfigError
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)

# GIOErrorEnum values carried in detailed ERROR statuses
GIO_FAILED = 0
GIO_EXISTS = 2
GIO_FILENAME_TOO_LONG = 9
GIO_INVALID_FILENAME = 10
GIO_NO_SPACE = 12
GIO_INVALID_ARGUMENT = 13
GIO_PERMISSION_DENIED = 14
GIO_TOO_MANY_OPEN_FILES = 31
_ERRNO_TO_GIO = {
    28: GIO_NO_SPACE,  # ENOSPC
    122: GIO_NO_SPACE,  # EDQUOT
    13: GIO_PERMISSION_DENIED,  # EACCES
    1: GIO_PERMISSION_DENIED,  # EPERM
    17: GIO_EXISTS,  # EEXIST
    36: GIO_FILENAME_TOO_LONG,  # ENAMETOOLONG
}


@dataclass(slots=True)
class _Transfer:
    xfer_id: int
    name: str
    fd: int
    size: int
    received: int = 0


class FileXferNode(ServiceNode):
    """Client->guest file transfer with safe names, limits and cancellation."""

    def on_start(self) -> None:
        """Validate settings and open the destination directory."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), FileXferSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self.client_caps = 0
        self.transfers: dict[int, _Transfer] = {}
        self.dir_fd: int | None = None
        self.directory = download_dir(os.environ, self.settings.directory)

    def on_stop(self) -> None:
        """Cancel whatever is unfinished (no partial file survives the actor)."""
        for xfer_id in list(self.transfers):
            self._drop(xfer_id, unlink=True)
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    # --- handlers (actor thread) --------------------------------------------------------------
    @handler("spice.announce_capabilities")
    def on_caps(self, msg: Incoming) -> None:
        """Remember the client's caps (detailed errors)."""
        self.client_caps = caps_from_body(msg.body or {})

    @handler("spice.file_xfer_start")
    def on_start_xfer(self, msg: Incoming) -> None:
        """Check policy, limits and the name; create the file; answer CAN_SEND_DATA."""
        body: dict[str, Any] = dict(msg.body or {})
        xfer_id = _as_int(body.get("id"))
        if xfer_id is None:
            log.warning("file_xfer_start without id", extra={"event": "filexfer.bad_request"})
            return
        self.ctx.count("filexfer.start")
        if body.get("greeter") or not self.settings.enabled:
            self._status(xfer_id, XferResult.DISABLED)
            return
        if body.get("session_locked"):
            self._status(xfer_id, XferResult.SESSION_LOCKED)
            return
        if xfer_id in self.transfers:
            self._error(xfer_id, GIO_INVALID_ARGUMENT, "transfer id already in use")
            return
        if len(self.transfers) >= self.settings.max_transfers:
            self._error(xfer_id, GIO_TOO_MANY_OPEN_FILES, "too many transfers")
            return
        try:
            meta = parse_keyfile(body["data"]) if "data" in body else {}
        except UnicodeDecodeError:
            self._error(xfer_id, GIO_INVALID_ARGUMENT, "START keyfile is not UTF-8")
            return
        name = str(body.get("name") or meta.get("name") or "")
        raw_size = body.get("size", meta.get("size"))
        size = int(raw_size) if isinstance(raw_size, str) and raw_size.isdigit() else _as_int(raw_size)
        if size is None or size < 0:
            self._error(xfer_id, GIO_INVALID_ARGUMENT, "missing or bad size")
            return
        try:
            name = safe_name(name)
        except UnsafeNameError as err:
            log.warning("unsafe file name: %s", err, extra={"event": "filexfer.unsafe_name"})
            self._error(xfer_id, GIO_INVALID_FILENAME, str(err))
            return
        if size > self.settings.max_file_size:
            self._error(xfer_id, GIO_NO_SPACE, "file larger than max_file_size")
            return
        pending = sum(t.size - t.received for t in self.transfers.values())
        if pending + size > self.settings.max_total_bytes:
            self._error(xfer_id, GIO_NO_SPACE, "transfer quota exceeded")
            return
        try:
            dir_fd = self._open_dir()
            stat = os.statvfs(dir_fd)
            free = stat.f_bavail * stat.f_frsize
            if free < size + pending + self.settings.reserve_bytes:
                self._status(xfer_id, XferResult.NOT_ENOUGH_SPACE, struct.pack("<Q", free))
                return
            final, fd = self._create(dir_fd, name)
        except OSError as err:
            self._os_error(xfer_id, err)
            return
        self.transfers[xfer_id] = _Transfer(xfer_id, final, fd, size)
        log.info("receiving", extra={"event": "filexfer.started", "xfer": xfer_id, "size": size})
        if size == 0:
            self._finish(xfer_id)
            return
        self._status(xfer_id, XferResult.CAN_SEND_DATA)

    @handler("spice.file_xfer_data")
    def on_data(self, msg: Incoming) -> None:
        """Append one chunk; SUCCESS when complete, ERROR on overflow or size mismatch."""
        body: dict[str, Any] = dict(msg.body or {})
        xfer_id = _as_int(body.get("id"))
        xfer = self.transfers.get(xfer_id) if xfer_id is not None else None
        if xfer is None or xfer_id is None:
            return  # stale data after a cancel: nothing to answer
        data = body.get("data")
        chunk = bytes(data) if isinstance(data, bytes | bytearray) else b"".join(msg.blobs)
        declared = _as_int(body.get("size", len(chunk)))
        if declared != len(chunk) or xfer.received + len(chunk) > xfer.size:
            self._drop(xfer_id, unlink=True)
            self._error(xfer_id, GIO_INVALID_ARGUMENT, "data size mismatch or overflow")
            return
        try:
            view = memoryview(chunk)
            while view:
                written = os.write(xfer.fd, view)
                view = view[written:]
        except OSError as err:
            self._drop(xfer_id, unlink=True)
            self._os_error(xfer_id, err)
            return
        xfer.received += len(chunk)
        self.ctx.count("filexfer.bytes", len(chunk))
        if xfer.received == xfer.size:
            self._finish(xfer_id)

    @handler("spice.file_xfer_status")
    def on_status(self, msg: Incoming) -> None:
        """The client cancelled or failed: drop the transfer and its partial file."""
        body: dict[str, Any] = dict(msg.body or {})
        xfer_id = _as_int(body.get("id"))
        if xfer_id is not None and xfer_id in self.transfers:
            log.info("transfer cancelled by client", extra={"event": "filexfer.cancelled"})
            self._drop(xfer_id, unlink=True)

    @handler("spice.client_disconnected")
    def on_disconnect(self, msg: Incoming) -> None:
        """The client left: cancel everything (no status can reach it any more)."""
        del msg
        for xfer_id in list(self.transfers):
            self._drop(xfer_id, unlink=True)
        self.client_caps = 0

    # --- internals ----------------------------------------------------------------------------
    def _open_dir(self) -> int:
        if self.dir_fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self.dir_fd

    def _create(self, dir_fd: int, name: str) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for candidate in candidates(name, self.settings.max_name_tries):
            try:
                return candidate, os.open(candidate, flags, 0o644, dir_fd=dir_fd)
            except FileExistsError:
                continue
        raise FileExistsError(17, "all alternative names exist")

    def _finish(self, xfer_id: int) -> None:
        xfer = self.transfers.pop(xfer_id)
        os.close(xfer.fd)
        log.info("file received", extra={"event": "filexfer.done", "xfer": xfer_id})
        self.ctx.count("filexfer.done")
        self._status(xfer_id, XferResult.SUCCESS)

    def _drop(self, xfer_id: int, *, unlink: bool) -> None:
        xfer = self.transfers.pop(xfer_id, None)
        if xfer is None:
            return
        os.close(xfer.fd)
        if unlink and self.dir_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(xfer.name, dir_fd=self.dir_fd)

    def _os_error(self, xfer_id: int, err: OSError) -> None:
        self._error(xfer_id, _ERRNO_TO_GIO.get(err.errno or 0, GIO_FAILED), err.strerror or "I/O")

    def _error(self, xfer_id: int, gio_code: int, why: str) -> None:
        log.warning("file transfer refused: %s", why, extra={"event": "filexfer.error", "gio": gio_code})
        self._status(xfer_id, XferResult.ERROR, struct.pack("<BI", 0, gio_code))

    def _status(self, xfer_id: int, result: XferResult, detail: bytes = b"") -> None:
        """Send STATUS; without FILE_XFER_DETAILED_ERRORS results > SUCCESS become ERROR."""
        body: dict[str, Any] = {"id": xfer_id, "result": int(result)}
        if has_cap(self.client_caps, Cap.FILE_XFER_DETAILED_ERRORS):
            if detail:
                body["data"] = detail
        elif result > XferResult.SUCCESS:
            body["result"] = int(XferResult.ERROR)
        send(self.ctx, "file_xfer_status", body)


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
