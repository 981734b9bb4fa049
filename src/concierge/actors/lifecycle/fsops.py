"""Filesystem ioctls: FIFREEZE, FITHAW and FITRIM on a mountpoint, with qemu-ga's error texts.

Each call opens the mountpoint O_RDONLY, issues one ioctl and closes it. These calls can block
(FIFREEZE syncs dirty data), so they run on worker threads only. Standard library only.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Sequence

from concierge.actors.lifecycle.mounts import Mount

# _IOWR('X', 119, int), _IOWR('X', 120, int), _IOWR('X', 121, struct fstrim_range)
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
FITRIM = 0xC0185879
_RANGE = struct.Struct("=QQQ")  # start, len, minlen
_U64_MAX = 2**64 - 1


class FreezeError(OSError):
    """FIFREEZE failed with an error that must abort the whole freeze."""


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def freeze(path: str) -> bool:
    """FIFREEZE ``path``: True if frozen now, False if skipped (unsupported or already frozen).

    Raises FreezeError with qemu-ga's message for any other failure.
    """
    try:
        fd = _open_dir(path)
    except OSError as err:
        reason = os.strerror(err.errno or 0)
        raise FreezeError(err.errno, f"failed to open {path}: {reason}") from err
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EBUSY):
            return False
        raise FreezeError(err.errno, f"failed to freeze {path}: {os.strerror(err.errno or 0)}") from err
    finally:
        os.close(fd)
    return True


def thaw(path: str) -> bool:
    """FITHAW ``path`` once; True if it was frozen (and is thawed now)."""
    try:
        fd = _open_dir(path)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def trim(path: str, minimum: int | None) -> dict[str, object]:
    """FITRIM the whole filesystem at ``path``; the per-path result dict of guest-fstrim."""
    result: dict[str, object] = {"path": path}
    try:
        fd = _open_dir(path)
    except OSError as err:
        result["error"] = f"failed to open: {os.strerror(err.errno or 0)}"
        return result
    try:
        buf = bytearray(_RANGE.pack(0, _U64_MAX, minimum or 0))
        fcntl.ioctl(fd, FITRIM, buf, True)
    except OSError as err:
        if err.errno in (errno.ENOTTY, errno.EOPNOTSUPP):
            result["error"] = "trim not supported"
        else:
            result["error"] = f"failed to trim: {os.strerror(err.errno or 0)}"
        return result
    finally:
        os.close(fd)
    _, trimmed, minlen = _RANGE.unpack(bytes(buf))
    result["minimum"] = minlen
    result["trimmed"] = trimmed
    return result


def trim_all(mounts: Sequence[Mount], minimum: int | None) -> dict[str, list[dict[str, object]]]:
    """guest-fstrim over ``mounts`` (mount order): never a top-level error for one path."""
    return {"paths": [trim(m.mountpoint, minimum) for m in mounts]}
