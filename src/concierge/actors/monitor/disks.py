"""``guest-get-disks`` inventory: every non-empty block device with partitions, slave
dependencies, device-mapper alias, address and NVMe SMART, in qemu-ga's order.

The NVMe SMART ioctl can block on a sick controller, so it goes through the deadline runner.
Must not import the node or transport code.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import struct
import threading
from typing import Any

from concierge.actors.monitor.blockdev import (
    DeviceWalk,
    UdevDb,
    UeventWatch,
    devnode,
    is_virtual,
    read_text,
    walk_device,
)
from concierge.actors.monitor.deadline import DeadlineRunner, ProbeTimeout

NVME_IOCTL_ADMIN_CMD = 0xC0484E41  # _IOWR('N', 0x41, struct nvme_passthru_cmd) (72 bytes)
_NVME_GET_LOG_PAGE = 0x02
_NVME_LOG_SMART = 0x02
_NVME_NSID_ALL = 0xFFFFFFFF
_SMART_PAIRS = (
    ("data_units_read", 32),
    ("data_units_written", 48),
    ("host_read_commands", 64),
    ("host_write_commands", 80),
    ("controller_busy_time", 96),
    ("power_cycles", 112),
    ("power_on_hours", 128),
    ("unsafe_shutdowns", 144),
    ("media_errors", 160),
    ("number_of_error_log_entries", 176),
)


def parse_smart_log(log: bytes) -> dict[str, Any]:
    """Decode a 512-byte NVMe SMART/health log page into QGA's GuestNVMeSmart (snake_case)."""
    smart: dict[str, Any] = {
        "type": "nvme",
        "critical_warning": log[0],
        "temperature": int.from_bytes(log[1:3], "little"),
        "available_spare": log[3],
        "available_spare_threshold": log[4],
        "percentage_used": log[5],
    }
    for name, offset in _SMART_PAIRS:
        low, high = struct.unpack_from("<QQ", log, offset)
        smart[f"{name}_lo"] = low
        smart[f"{name}_hi"] = high
    return smart


def read_nvme_smart(dev: str) -> dict[str, Any] | None:
    """Ask the controller for its SMART log page (root only); None when it refuses."""
    buf = ctypes.create_string_buffer(512)
    cdw10 = _NVME_LOG_SMART | (1 << 15) | (((512 >> 2) - 1) << 16)
    cmd = bytearray(
        struct.pack(
            "<BBHIIIQQII6III",
            _NVME_GET_LOG_PAGE,
            0,
            0,
            _NVME_NSID_ALL,
            0,
            0,
            0,
            ctypes.addressof(buf),
            0,
            512,
            cdw10,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    )
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse_smart_log(buf.raw)


def _is_partition_of(disk: str, name: str) -> bool:
    rest = name[len(disk) :] if name.startswith(disk) else ""
    if rest[:1] == "p":
        rest = rest[1:]
    return rest[:1].isdigit()


class DiskProbe:
    """Builds ``monitor.disks`` replies from /sys/block."""

    def __init__(
        self,
        runner: DeadlineRunner,
        *,
        timeout_s: float,
        sys_root: str = "/sys",
        udev: UdevDb | None = None,
    ) -> None:
        self._runner = runner
        self._timeout_s = timeout_s
        self._sys_block = f"{sys_root}/block"
        self._udev = udev or UdevDb()
        self._watch = UeventWatch()
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, tuple[str, ...]], list[dict[str, Any]]] | None = None
        self.rebuilds = 0

    def close(self) -> None:
        """Release the uevent socket."""
        self._watch.close()

    def _alias(self, disk_dir: str) -> str | None:
        alias = self._udev.properties(disk_dir).get("DM_NAME")
        if alias is None:  # no udev database: the kernel knows the dm name too
            alias = (read_text(os.path.join(disk_dir, "dm", "name")) or "").strip()
        return alias or None

    def probe(self) -> list[dict[str, Any]]:
        """The reply body of ``monitor.disks``: the sysfs layout is rebuilt only after a
        block uevent (or a changed /sys/block listing); SMART is always read fresh."""
        try:
            entries = list(os.scandir(self._sys_block))
        except OSError:
            return []
        with self._lock:
            key = (self._watch.generation(), tuple(e.name for e in entries))
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self._build(entries))
                self.rebuilds += 1
            layout = self._cache[1]
        result = [dict(disk) for disk in layout]
        for disk in result:
            if disk.get("address", {}).get("bus-type") == "nvme":
                self._add_smart(disk)
        return result

    def _add_smart(self, disk: dict[str, Any]) -> None:
        name = disk["name"]
        try:
            smart = self._runner.run(f"smart:{name}", functools.partial(read_nvme_smart, name), self._timeout_s)
        except ProbeTimeout:
            return
        if smart is not None:
            disk["smart"] = smart

    def _build(self, entries: list[os.DirEntry[str]]) -> list[dict[str, Any]]:
        built: list[dict[str, Any]] = []
        for entry in entries:
            if not entry.is_symlink():
                continue
            disk_dir = os.path.join(self._sys_block, entry.name)
            size = read_text(os.path.join(disk_dir, "size"))
            if size is None or size == "0\n":
                continue
            name = devnode(disk_dir)
            if name is None:
                continue
            disk: dict[str, Any] = {"name": name, "partition": False}
            alias = self._alias(disk_dir)
            if alias:
                disk["alias"] = alias
            built.append(disk)
            if not is_virtual(disk_dir):
                walk = DeviceWalk()
                walk_device(disk_dir, walk, self._udev)
                if walk.disks:
                    disk["address"] = walk.disks[0]
            self._dependencies(disk_dir, disk)
            built.extend(self._partitions(entry.name, disk_dir, name))
        built.reverse()  # qemu-ga prepends every entry
        return built

    def _dependencies(self, disk_dir: str, disk: dict[str, Any]) -> None:
        slaves = os.path.join(disk_dir, "slaves")
        try:
            names = os.listdir(slaves)
        except OSError:
            return
        deps: list[str] = []
        for slave in names:
            node = devnode(os.path.join(slaves, slave))
            if node is not None:
                deps.insert(0, node)
        disk["dependencies"] = deps

    def _partitions(self, disk_name: str, disk_dir: str, disk_dev: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for entry in os.scandir(disk_dir):
            if not entry.is_dir(follow_symlinks=False) or not _is_partition_of(disk_name, entry.name):
                continue
            node = devnode(os.path.join(disk_dir, entry.name))
            if node is None:
                continue
            parts.append({"name": node, "partition": True, "dependencies": [disk_dev]})
        return parts
