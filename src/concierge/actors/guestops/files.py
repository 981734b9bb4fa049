"""guest-file-* with qemu-ga's semantics: handles from a persistent counter, stdio-like eof.

Files are opened non-blocking (a FIFO never hangs a worker) and read in bounded chunks that are
base64-encoded as they arrive, so a 48 MiB read never holds more than one chunk of raw bytes.
A handle is used by one thread at a time (its own lock); the table has another.
Writes are unbuffered (straight to the kernel), so guest-file-flush has nothing to push.
Must not import pykka or zmq: this module is plain file handling, testable on its own.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from concierge.actors.guestops import qbase64
from concierge.errors import ActorError, ErrorCode

log = logging.getLogger(__name__)

#: fopen modes qemu-ga accepts -> open(2) flags (O_TRUNC applied after the policy check)
OPEN_FLAGS: dict[str, int] = {
    "r": os.O_RDONLY,
    "rb": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+": os.O_RDWR,
    "rb+": os.O_RDWR,
    "r+b": os.O_RDWR,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "wb+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "w+b": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "ab+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}
WHENCE = {"set": os.SEEK_SET, "cur": os.SEEK_CUR, "end": os.SEEK_END}
DEFAULT_READ = 4096
NEW_FILE_MODE = 0o666  # qemu-ga creates files 0666 whatever the umask
FIRST_HANDLE = 1000
CHUNK = 3 * 256 * 1024  # multiple of 3: base64 pieces concatenate without padding


def _generic(message: str) -> ActorError:
    return ActorError(ErrorCode.BAD_REQUEST, message)


def _oserror(prefix: str, err: OSError) -> ActorError:
    return _generic(f"{prefix}: {os.strerror(err.errno or errno.EIO)}")


class HandleCounter:
    """qemu-ga's ``fd_counter``: the next handle, saved on every open so handles never repeat."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "fd_counter"
        self._next = FIRST_HANDLE
        try:
            text = self._path.read_text(encoding="ascii").strip()
            self._next = max(FIRST_HANDLE, int(text))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as err:
            log.warning(
                "unreadable handle counter %s: %s", self._path, err, extra={"event": "guestops.files.counter_reset"}
            )

    def take(self) -> int:
        """Return a fresh handle and persist the next one (atomically: temp file + rename)."""
        handle = self._next
        self._next += 1
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            tmp.write_text(f"{self._next}\n", encoding="ascii")
            os.replace(tmp, self._path)
        except OSError as err:
            # qemu-ga refuses the open when the state cannot be saved; so do we
            self._next -= 1
            raise _generic(f"failed to save persistent state: {err.strerror}") from err
        return handle


@dataclass(eq=False)
class OpenFile:
    """One guest-file handle: its fd, the path it was opened with, and its lock."""

    fd: int
    path: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReadBudget:
    """Caps the bytes all concurrent reads may hold, so 8 workers x 48 MiB cannot pile up."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._cond = threading.Condition()

    def acquire(self, want: int) -> int:
        """Wait until ``want`` bytes (capped at the total) are free; return what was taken."""
        take = min(want, self.total)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= take)
            self._free -= take
        return take

    def release(self, taken: int) -> None:
        """Give bytes back."""
        with self._cond:
            self._free += taken
            self._cond.notify_all()


class FileTable:
    """The open handles of this actor process."""

    def __init__(self, state_dir: Path, *, max_read: int, read_budget: int = 0) -> None:
        self._counter = HandleCounter(state_dir)
        self._files: dict[int, OpenFile] = {}
        self._lock = threading.Lock()
        self.max_read = max_read
        self._budget = ReadBudget(read_budget or max_read)

    def __len__(self) -> int:
        return len(self._files)

    def open(self, path: str, mode: str, check: Callable[[str], None]) -> int:
        """Open ``path``; ``check(real_path)`` may veto the opened file before it is truncated."""
        flags = OPEN_FLAGS.get(mode)
        if flags is None:
            raise _generic(f"invalid file open mode '{mode}'")
        open_flags = (flags & ~os.O_TRUNC) | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            try:
                fd = os.open(path, open_flags | (os.O_EXCL if flags & os.O_CREAT else 0), NEW_FILE_MODE)
                created = bool(flags & os.O_CREAT)
            except FileExistsError:
                fd = os.open(path, open_flags & ~os.O_CREAT)
                created = False
        except OSError as err:
            raise _generic(f"failed to open file '{path}' (mode: '{mode}'): {os.strerror(err.errno or 0)}") from err
        try:
            check(os.readlink(f"/proc/self/fd/{fd}"))
            if created:
                os.fchmod(fd, NEW_FILE_MODE)
            if flags & os.O_TRUNC:
                os.ftruncate(fd, 0)
            with self._lock:
                handle = self._counter.take()
                self._files[handle] = OpenFile(fd=fd, path=path)
        except ActorError:
            os.close(fd)
            raise
        except OSError as err:
            os.close(fd)
            raise _generic(f"failed to open file '{path}' (mode: '{mode}'): {os.strerror(err.errno or 0)}") from err
        return handle

    def _get(self, handle: int) -> OpenFile:
        with self._lock:
            entry = self._files.get(handle)
        if entry is None:
            raise ActorError(ErrorCode.NOT_FOUND, f"handle '{handle}' has not been found")
        return entry

    def close(self, handle: int) -> None:
        """Close and forget ``handle``."""
        with self._lock:
            entry = self._files.pop(handle, None)
        if entry is None:
            raise ActorError(ErrorCode.NOT_FOUND, f"handle '{handle}' has not been found")
        with entry.lock:
            os.close(entry.fd)

    def path_of(self, handle: int) -> str:
        """The path a handle was opened with ("" when unknown), for the audit trail."""
        with self._lock:
            entry = self._files.get(handle)
        return entry.path if entry is not None else ""

    def read(self, handle: int, count: int | None) -> dict[str, object]:
        """Up to ``count`` bytes, base64-encoded chunk by chunk; ``eof`` as stdio reports it."""
        entry = self._get(handle)
        want = DEFAULT_READ if count is None else count
        if want < 0 or want > self.max_read:
            raise _generic(f"value '{want}' is invalid for argument count")
        taken = self._budget.acquire(want)
        try:
            return self._read_locked(entry, want)
        finally:
            self._budget.release(taken)

    def _read_locked(self, entry: OpenFile, want: int) -> dict[str, object]:
        parts: list[str] = []
        got = 0
        eof = False
        with entry.lock:
            buf = bytearray(min(CHUNK, want))
            view = memoryview(buf)
            # like fread on this glibc: every read tries again (a grown file yields more data)
            # and eof means "this read ended short"; a zero-byte read never reports eof
            while got < want and not eof:
                size = min(CHUNK, want - got)
                filled = 0
                try:
                    while filled < size:
                        n = os.readv(entry.fd, [view[filled:size]])
                        if n == 0:
                            eof = True
                            break
                        filled += n
                except BlockingIOError as err:
                    if got + filled == 0:
                        raise _oserror("failed to read file", err) from err
                    size = -1
                except OSError as err:
                    raise _oserror("failed to read file", err) from err
                if filled:
                    parts.append(base64.b64encode(view[:filled]).decode("ascii"))
                    got += filled
                if size < 0 or filled % 3:  # short piece: must be the last one
                    break
        return {"count": got, "buf-b64": "".join(parts), "eof": eof}

    def write(self, handle: int, data_b64: str, count: int | None) -> dict[str, object]:
        """Write the decoded buffer (or its first ``count`` bytes)."""
        entry = self._get(handle)
        data = qbase64.decode(data_b64)
        want = len(data) if count is None else count
        if want < 0 or want > len(data):
            raise _generic(f"value '{want}' is invalid for argument count")
        done = 0
        view = memoryview(data)
        with entry.lock:
            try:
                while done < want:
                    done += os.write(entry.fd, view[done:want])
            except OSError as err:
                if done == 0 or not isinstance(err, BlockingIOError):
                    raise _oserror("failed to write to file", err) from err
        return {"count": done, "eof": False}

    def seek(self, handle: int, offset: int, whence: int | str) -> dict[str, object]:
        """Move the file position; clears eof like fseek."""
        entry = self._get(handle)
        if isinstance(whence, str):
            code = WHENCE.get(whence)
            if code is None:
                raise _generic(f"Parameter 'whence' does not accept value '{whence}'")
        elif whence in (0, 1, 2):
            code = whence
        else:
            raise _generic(f"invalid whence code {whence}")
        with entry.lock:
            try:
                position = os.lseek(entry.fd, offset, code)
            except OSError as err:
                raise _oserror("failed to seek file", err) from err
            except OverflowError as err:
                raise _generic("failed to seek file: Invalid argument") from err
        return {"position": position, "eof": False}

    def flush(self, handle: int) -> dict[str, object]:
        """Nothing is buffered in this process (writes go straight to the kernel), like fflush."""
        entry = self._get(handle)
        with entry.lock:
            pass
        return {}

    def close_all(self) -> None:
        """Close every handle (actor stop)."""
        with self._lock:
            entries = list(self._files.values())
            self._files.clear()
        for entry in entries:
            # never close an fd under a running read (its number could be reused mid-read);
            # one still busy after a second is left to the process exit
            if entry.lock.acquire(timeout=1.0):
                try:
                    os.close(entry.fd)
                finally:
                    entry.lock.release()
