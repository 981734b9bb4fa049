"""vCPU and memory-block onlining through sysfs, with qemu-ga's semantics and texts.

guest-set-vcpus processes a prefix and fails only if the first entry fails; a CPU without an
``online`` file (cpu0) reads as online and not offlinable. guest-set-memory-blocks answers
per block (success / not-found / operation-not-supported / operation-failed + errno).
The sysfs root is injectable so tests run against a fake tree. Standard library only.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

_CPU_DIR = re.compile(r"^cpu(\d+)$")
_MEM_DIR = re.compile(r"^memory(\d+)$")


def _read_small(path: str, dir_fd: int | None = None) -> bytes:
    """The first bytes of a small sysfs attribute (FileNotFoundError etc. as ``open`` raises)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


class HotplugError(Exception):
    """A request-level failure; ``str()`` is qemu-ga's text."""


def _err(err: OSError, what: str) -> HotplugError:
    return HotplugError(f"{what}: {os.strerror(err.errno or 0)}")


class Hotplug:
    """Reads and writes ``<sysfs_root>/devices/system/{cpu,memory}``."""

    def __init__(self, sysfs_root: str = "/sys") -> None:
        self.cpu_dir = Path(sysfs_root) / "devices" / "system" / "cpu"
        self.mem_dir = Path(sysfs_root) / "devices" / "system" / "memory"

    # --- vCPUs --------------------------------------------------------------------------------
    def get_vcpus(self) -> list[dict[str, Any]]:
        """Every ``cpuN``: logical-id, online, can-offline, in sysfs (readdir) order as qemu-ga
        lists them (on a 2-vCPU guest: cpu1, cpu0); a host sorting by id sees no difference."""
        try:
            names = os.listdir(self.cpu_dir)
        except OSError as err:
            raise _err(err, f"failed to list entries: {self.cpu_dir}") from err
        ids = [int(m.group(1)) for n in names if (m := _CPU_DIR.match(n))]
        return [self._read_vcpu(i) for i in ids]

    def _read_vcpu(self, cpu: int) -> dict[str, Any]:
        path = f"{self.cpu_dir}/cpu{cpu}/"
        try:
            with open(path + "online", "rb") as fh:
                status = fh.read(1)
        except FileNotFoundError:
            return {"logical-id": cpu, "online": True, "can-offline": False}
        except OSError as err:
            raise _err(err, f'open("{path}/online")') from err
        if not status:
            raise HotplugError(f'pread("{path}/online"): unexpected EOF')
        return {"logical-id": cpu, "online": status != b"0", "can-offline": True}

    def set_vcpus(self, items: list[tuple[int, bool]]) -> int:
        """Apply (logical-id, online) in order; returns the processed prefix length."""
        processed = 0
        for cpu, online in items:
            try:
                self._write_vcpu(cpu, online)
            except HotplugError:
                if processed == 0:
                    raise
                break
            processed += 1
        return processed

    def _write_vcpu(self, cpu: int, online: bool) -> None:
        path = f"{self.cpu_dir}/cpu{cpu}/"
        if not os.path.isdir(path):
            raise HotplugError(f'open("{path}"): {os.strerror(errno.ENOENT)}')
        try:
            fd = os.open(path + "online", os.O_RDWR)
        except FileNotFoundError:
            if not online:
                raise HotplugError(f"logical processor #{cpu} can't be offlined") from None
            return  # pretend successful re-onlining, as qemu-ga
        except OSError as err:
            raise _err(err, f'open("{path}/online")') from err
        try:
            status = os.pread(fd, 1, 0)
            if not status:
                raise HotplugError(f'pread("{path}/online"): unexpected EOF')
            if (status != b"0") != online:
                os.pwrite(fd, b"1" if online else b"0", 0)
        except OSError as err:
            raise _err(err, f'pwrite("{path}/online")') from err
        finally:
            os.close(fd)

    def set_online_count(self, count: int) -> int:
        """oVirt: keep ``count`` CPUs online (lowest ids first); returns how many are online."""
        if count < 1:
            raise HotplugError(f"invalid CPU count {count}: at least one CPU must stay online")
        cpus = sorted(self.get_vcpus(), key=lambda c: int(c["logical-id"]))
        wanted = {c["logical-id"] for c in cpus[:count]}
        plan = [(c["logical-id"], c["logical-id"] in wanted) for c in cpus]
        plan.sort(key=lambda item: not item[1])  # online first, then offline
        for cpu, online in plan:
            self._write_vcpu(cpu, online)
        return sum(1 for c in self.get_vcpus() if c["online"])

    # --- memory blocks ------------------------------------------------------------------------
    def get_memory_blocks(self) -> list[dict[str, Any]]:
        """Every ``memoryN``: phys-index, online, can-offline, in sysfs (readdir) order as qemu-ga."""
        try:
            names = os.listdir(self.mem_dir)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise _err(err, f'Can\'t open directory"{self.mem_dir}/"') from err
        indexes = [int(m.group(1)) for n in names if (m := _MEM_DIR.match(n))]
        # paths relative to the directory, as qemu-ga's openat: a full sysfs path walk per file
        # cost ~15% of the whole answer
        dir_fd = os.open(self.mem_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            blocks = [self._read_block(i, dir_fd) for i in indexes]
        finally:
            os.close(dir_fd)
        if not blocks:
            raise HotplugError("guest reported zero memory blocks!")
        return blocks

    def _read_block(self, index: int, dir_fd: int) -> dict[str, Any]:
        # plain os calls on string paths: a guest has hundreds of blocks, and pathlib plus the io
        # stack cost ~4x the read itself (guest-get-memory-blocks answers in ~1/4 of the time)
        path = f"memory{index}"
        try:
            state = _read_small(f"{path}/state", dir_fd)[:10]
        except FileNotFoundError:
            return {"phys-index": index, "online": True, "can-offline": False}
        except OSError as err:
            raise _err(err, 'pread sysfs file "state"') from err
        try:
            removable = _read_small(f"{path}/removable", dir_fd)[:1]
            can_offline = removable != b"0"
        except FileNotFoundError:
            can_offline = False
        except OSError as err:
            raise _err(err, 'pread sysfs file "removable"') from err
        online = state.startswith(b"online")
        return {"phys-index": index, "online": online, "can-offline": can_offline}

    def set_memory_blocks(self, items: list[tuple[int, bool]]) -> list[dict[str, Any]]:
        """Apply (phys-index, online) per block; one response per request element."""
        return [self._write_block(index, online) for index, online in items]

    def _write_block(self, index: int, online: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"phys-index": index, "response": "success"}
        if not self.mem_dir.is_dir():
            return {**result, "response": "operation-not-supported", "error-code": errno.ENOENT}
        path = self.mem_dir / f"memory{index}"
        if not path.is_dir():
            return {**result, "response": "not-found", "error-code": errno.ENOENT}
        try:
            state = (path / "state").read_bytes()[:10]
        except FileNotFoundError:
            if not online:
                return {**result, "response": "operation-not-supported", "error-code": errno.ENOENT}
            return result
        except OSError as err:
            return {**result, "response": "operation-failed", "error-code": err.errno or 0}
        if state.startswith(b"online") != online:
            try:
                fd = os.open(path / "state", os.O_WRONLY)
                try:
                    os.pwrite(fd, b"online" if online else b"offline", 0)
                finally:
                    os.close(fd)
            except OSError as err:
                return {**result, "response": "operation-failed", "error-code": err.errno or 0}
        return result

    def get_memory_block_info(self) -> dict[str, int]:
        """``block_size_bytes`` (hex in sysfs) as ``{"size": int}``."""
        try:
            raw = (self.mem_dir / "block_size_bytes").read_text()[:20]
        except OSError as err:
            raise _err(err, f'open("{self.mem_dir}/")') from err
        try:
            return {"size": int(raw.strip(), 16)}
        except ValueError as err:
            raise HotplugError(f"invalid block_size_bytes {raw.strip()!r}") from err
