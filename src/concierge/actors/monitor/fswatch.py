"""inotify on a few directories, for answers that change only when a file does (os-release).

Why directories and not the files: os-release is usually a symlink (/etc/os-release ->
../usr/lib/os-release) replaced by rename on upgrade, which a watch on the file itself would
miss. The callback gets no detail: the owner recomputes and compares, which also covers a
rename of a directory on the way. Standard library only (ctypes on libc); where inotify is
unavailable :func:`open_watch` returns None and the answers are simply not pushed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterable

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
# IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE |
# IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
_MASK = 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x01000000
#: bytes read per wake-up; events beyond it are read at the next one
_READ = 4096


class DirWatch:
    """An inotify fd watching ``names`` in their parent directories."""

    def __init__(self, fd: int, names: frozenset[bytes], on_change: Callable[[], None]) -> None:
        self.fd = fd
        self._names = names
        self._on_change = on_change

    def readable(self, _revents: int) -> None:
        """Drain events; call back once if one names a watched file (or a directory went)."""
        try:
            data = os.read(self.fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            return
        hit, pos = False, 0
        while pos + 16 <= len(data):
            mask = int.from_bytes(data[pos + 4 : pos + 8], "little")
            length = int.from_bytes(data[pos + 12 : pos + 16], "little")
            name = data[pos + 16 : pos + 16 + length].rstrip(b"\0")
            if name in self._names or mask & (0x400 | 0x800 | 0x4000):  # *_SELF, Q_OVERFLOW
                hit = True
            pos += 16 + length
        if hit:
            self._on_change()

    def close(self) -> None:
        """Release the fd."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_watch(paths: Iterable[str], on_change: Callable[[], None]) -> DirWatch | None:
    """Watch the files at ``paths`` (through their directories); None if inotify is absent."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    names, watched = set(), 0
    for path in paths:
        for real in {path, os.path.realpath(path)}:
            directory, base = os.path.split(real)
            names.add(base.encode())
            if libc.inotify_add_watch(fd, os.fsencode(directory or "."), _MASK) >= 0:
                watched += 1
    if not watched:
        os.close(fd)
        return None
    return DirWatch(fd, frozenset(names), on_change)
