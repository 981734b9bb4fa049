"""The mount table as the quiesce and fstrim code sees it: local, freezable filesystems in order.

Reads ``/proc/self/mountinfo`` (path injectable), decodes octal escapes, drops pseudo, network,
overlay, tmpfs and FUSE filesystems (device major 0, except btrfs), and applies the
``only_mountpoints`` safety filter. Pure parsing plus ``os.stat``; no ioctls, no actor imports.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: never frozen or trimmed even when they sit on a block device (or claim to)
ALWAYS_SKIPPED = frozenset(
    {
        "overlay",
        "tmpfs",
        "devtmpfs",
        "ramfs",
        "proc",
        "sysfs",
        "squashfs",
        "iso9660",
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
        "9p",
        "virtiofs",
        "ceph",
        "glusterfs",
        "autofs",
        "fuse",
        "fuseblk",
        "zfs",
    }
)

_OCTAL = re.compile(r"\\([0-3][0-7]{2})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One mounted filesystem: where, what type, on which device."""

    mountpoint: str
    fstype: str
    source: str
    major: int
    minor: int

    @property
    def device(self) -> tuple[int, int]:
        """The (major, minor) pair identifying the filesystem instance."""
        return (self.major, self.minor)


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text into mounts, in mount order; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        majmin = fields[2].split(":")
        if len(majmin) != 2 or not all(part.isdigit() for part in majmin):
            continue
        mounts.append(
            Mount(
                mountpoint=_unescape(fields[4]),
                fstype=tail[0],
                source=_unescape(tail[1]),
                major=int(majmin[0]),
                minor=int(majmin[1]),
            )
        )
    return mounts


def _block_device_of(source: str) -> tuple[int, int] | None:
    try:
        st = os.stat(source)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


def is_local_freezable(mount: Mount, extra_skip: Iterable[str] = ()) -> bool:
    """True for a local block-backed filesystem that FIFREEZE/FITRIM can work on."""
    if mount.fstype in ALWAYS_SKIPPED or mount.fstype.startswith("fuse."):
        return False
    if mount.fstype in set(extra_skip):
        return False
    if mount.major == 0:
        # btrfs reports an anonymous device; accept it when its source is a block device
        return mount.fstype == "btrfs" and _block_device_of(mount.source) is not None
    return True


def local_mounts(
    table: Path | str,
    *,
    only: Sequence[str] = (),
    extra_skip: Iterable[str] = (),
) -> list[Mount]:
    """Local filesystems in mount order; restricted to ``only`` when it is non-empty.

    Raises OSError when the table cannot be read (callers turn it into an error reply).
    """
    text = Path(table).read_text(encoding="utf-8", errors="surrogateescape")
    allowed = {os.path.normpath(p) for p in only}
    skip = list(extra_skip)
    return [
        m
        for m in parse_mountinfo(text)
        if is_local_freezable(m, skip) and (not allowed or os.path.normpath(m.mountpoint) in allowed)
    ]


def freeze_order(mounts: Sequence[Mount], requested: Sequence[str] | None) -> list[Mount]:
    """The mounts to freeze, children before parents (reverse mount order), one per device.

    ``requested`` (guest-fsfreeze-freeze-list) selects mountpoints by exact path; unknown ones
    are ignored, as qemu-ga does. Bind mounts of an already selected device are dropped.
    """
    wanted = None if requested is None else {os.path.normpath(p) for p in requested}
    chosen: list[Mount] = []
    seen: set[tuple[int, int]] = set()
    for mount in mounts:
        if wanted is not None and os.path.normpath(mount.mountpoint) not in wanted:
            continue
        if mount.device in seen:
            continue
        seen.add(mount.device)
        chosen.append(mount)
    chosen.reverse()
    return chosen
