"""Mounted filesystems: the mount table (cached behind mountinfo's poll notification), backing
disks from sysfs, and sizes from statvfs run under a deadline.

Two scopes: ``block`` is exactly qemu-ga's ``guest-get-fsinfo`` set (block-backed mounts and
btrfs, in qemu-ga's reversed order); ``all`` adds network/FUSE mounts minus oVirt's ignore
list, for disks-usage. Must not import the node or transport code.
"""

from __future__ import annotations

import functools
import os
import select
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from concierge.actors.monitor.blockdev import DeviceWalk, UdevDb, UeventWatch, walk_device
from concierge.actors.monitor.deadline import DeadlineRunner, ProbeTimeout

#: oVirt guest agent's ignored_fs: pseudo filesystems never reported in scope "all"
IGNORED_FS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "fuse.gvfsd-fuse",
        "fuse.gvfs-fuse-daemon",
        "fuse.portal",
        "hugetlbfs",
        "mqueue",
        "nfsd",
        "nsfs",
        "proc",
        "pstore",
        "ramfs",
        "rootfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "udev",
        "usbfs",
        "overlay",
    }
)


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/self/mountinfo (escapes decoded)."""

    major: int
    minor: int
    mountpoint: str
    fstype: str
    source: str


def decode_mount_field(text: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` for space, ``\\134`` for backslash)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] == "\\":
            out.append("\\")
            i += 2
        elif (
            char == "\\"
            and len(text) >= i + 4
            and text[i + 1] in "0123"
            and text[i + 2] in "01234567"
            and text[i + 3] in "01234567"
        ):
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(char)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
            major_s, _, minor_s = fields[2].partition(":")
            mounts.append(
                Mount(
                    major=int(major_s),
                    minor=int(minor_s),
                    mountpoint=decode_mount_field(fields[4]),
                    fstype=fields[dash + 1],
                    source=decode_mount_field(fields[dash + 2]) if len(fields) > dash + 2 else "",
                )
            )
        except (ValueError, IndexError):
            continue
    return mounts


class MountTable:
    """The mount table, re-read only after the kernel signals a change (POLLPRI on the fd)."""

    def __init__(self, path: str = "/proc/self/mountinfo") -> None:
        self._path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI | select.POLLERR)
        self._mounts: list[Mount] | None = None
        self.generation = 0

    def current(self) -> list[Mount]:
        """Mounts in kernel order; cheap when nothing changed since the last call."""
        with self._lock:
            if self._mounts is None or self._poll.poll(0):
                self._mounts = parse_mountinfo(self._read())
                self.generation += 1
            return self._mounts

    def _read(self) -> str:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks: list[bytes] = []
        while chunk := os.read(self._fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "surrogateescape")

    def close(self) -> None:
        """Release the fd."""
        with self._lock:
            os.close(self._fd)


def _btrfs_device(source: str) -> tuple[int, int] | None:
    try:
        info = os.stat(source)
    except OSError:
        return None
    if not stat.S_ISBLK(info.st_mode):
        return None
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def is_hidden(mountpoint: str, hidden: tuple[str, ...]) -> bool:
    """True when ``mountpoint`` is one of ``hidden`` or below one (paths compared normalised)."""
    path = os.path.normpath(mountpoint)
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in hidden)


def agent_mount_roots(configured: list[str], *extra: str | None) -> tuple[str, ...]:
    """The agent's own directories whose mounts a host must never see.

    systemd bind-mounts ``StateDirectory=``/``RuntimeDirectory=`` into the service's mount
    namespace; qemu-ga's answer in the same guest has no such entry, so neither may ours. The
    environment variables are systemd's (colon-separated lists).
    """
    roots: list[str] = list(configured) + [path for path in extra if path]
    for variable in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
        roots.extend(part for part in os.environ.get(variable, "").split(":") if part)
    return tuple(sorted({os.path.normpath(root) for root in roots if root.startswith("/") and root != "/"}))


class FilesystemProbe:
    """Builds ``monitor.filesystems`` replies; safe to call from several threads."""

    def __init__(
        self,
        runner: DeadlineRunner,
        *,
        timeout_s: float,
        mountinfo: str = "/proc/self/mountinfo",
        sys_root: str = "/sys",
        udev: UdevDb | None = None,
        hidden: tuple[str, ...] = (),
    ) -> None:
        self._runner = runner
        self._hidden = hidden
        self._timeout_s = timeout_s
        self._table = MountTable(mountinfo)
        self._sys_root = sys_root
        self._udev = udev or UdevDb()
        self._walks: dict[tuple[int, int], DeviceWalk] = {}
        self._walk_generation: tuple[int, int] = (-1, -1)
        self._uevents = UeventWatch()  # a udev serial or dm rename also invalidates the walks
        self._lock = threading.Lock()

    def _walk(self, major: int, minor: int) -> DeviceWalk:
        with self._lock:
            generation = (self._table.generation, self._uevents.generation())
            if self._walk_generation != generation:
                self._walks.clear()
                self._walk_generation = generation
            cached = self._walks.get((major, minor))
        if cached is not None:
            return cached
        walk = DeviceWalk()
        walk_device(f"{self._sys_root}/dev/block/{major}:{minor}", walk, self._udev)
        with self._lock:
            self._walks[(major, minor)] = walk
        return walk

    def selected(self, scope: str) -> list[tuple[Mount, int, int]]:
        """Mounts of ``scope`` with the device numbers qemu-ga would resolve."""
        chosen: list[tuple[Mount, int, int]] = []
        seen: set[tuple[str, str]] = set()
        for mount in self._table.current():
            if self._hidden and is_hidden(mount.mountpoint, self._hidden):
                continue
            major, minor = mount.major, mount.minor
            if major == 0 and mount.fstype == "btrfs":
                numbers = _btrfs_device(mount.source)
                if numbers is not None:
                    major, minor = numbers
            if major != 0:
                chosen.append((mount, major, minor))
            elif scope == "all" and mount.fstype not in IGNORED_FS:
                key = (mount.source, mount.mountpoint)
                if key not in seen:
                    seen.add(key)
                    chosen.append((mount, 0, mount.minor))
        return chosen

    def probe(self, scope: str = "block") -> dict[str, Any]:
        """The reply body of ``monitor.filesystems`` (waits on this thread)."""
        chosen = self.selected(scope)
        return self._body(chosen, self._runner.run_many(self._statvfs_jobs(chosen), self._timeout_s))

    def probe_then(
        self,
        scope: str,
        answer: Callable[[dict[str, Any]], None],
        arm: Callable[[float, Callable[[], None]], Any],
    ) -> None:
        """:meth:`probe`, answered by ``answer(body)`` from the probe thread that finishes the
        statvfs set (or at the deadline via ``arm``): no thread waits for the probes."""
        chosen = self.selected(scope)
        self._runner.run_many_then(
            self._statvfs_jobs(chosen), self._timeout_s, lambda sizes: answer(self._body(chosen, sizes)), arm
        )

    @staticmethod
    def _statvfs_jobs(chosen: list[tuple[Mount, int, int]]) -> list[tuple[str, Callable[[], Any]]]:
        return [
            (f"statvfs:{mount.mountpoint}", functools.partial(os.statvfs, mount.mountpoint)) for mount, _, _ in chosen
        ]

    def _body(self, chosen: list[tuple[Mount, int, int]], sizes: list[Any]) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        timed_out: list[str] = []
        for (mount, major, minor), vfs in zip(chosen, sizes, strict=True):
            if major:
                walk = self._walk(major, minor)
                name = walk.name or f"{major}:{minor}"
                disks = walk.disks
            else:
                name, disks = mount.source, []
            entry: dict[str, Any] = {
                "name": name,
                "mountpoint": mount.mountpoint,
                "type": mount.fstype,
            }
            if isinstance(vfs, ProbeTimeout):
                timed_out.append(mount.mountpoint)
            elif isinstance(vfs, os.statvfs_result):
                used = vfs.f_blocks - vfs.f_bfree
                entry["used_bytes"] = used * vfs.f_frsize
                entry["total_bytes"] = (used + vfs.f_bavail) * vfs.f_frsize
                entry["total_bytes_privileged"] = vfs.f_blocks * vfs.f_frsize
            entry["disks"] = [dict(disk) for disk in disks]
            entries.append(entry)
        entries.reverse()  # qemu-ga prepends while walking the mount table
        return {"filesystems": entries, "timed_out": timed_out}

    def close(self) -> None:
        """Release the mount-table fd and the uevent socket."""
        self._table.close()
        self._uevents.close()
