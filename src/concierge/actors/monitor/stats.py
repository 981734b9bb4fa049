"""Kernel counters from procfs: /proc/diskstats, per-CPU /proc/stat (in ms, as qemu-ga),
/proc/meminfo and /proc/vmstat. Plain parsing, no caching (counters always change).
Must not import the node or transport code.
"""

from __future__ import annotations

import os
import re
from typing import Any

_DISK_14 = (
    "read_ios",
    "read_merges",
    "read_sectors",
    "read_ticks",
    "write_ios",
    "write_merges",
    "write_sectors",
    "write_ticks",
    "ios_pgr",
    "total_ticks",
    "weight_ticks",
)
_DISK_18 = ("discard_ios", "discard_merges", "discard_sectors", "discard_ticks")
_DISK_20 = ("flush_ios", "flush_ticks")
_VMSTAT = re.compile(r"^(pswpin|pswpout|pgfault|pgmajfault) (\d+)$", re.MULTILINE)
_CPU_OPTIONAL = ("iowait", "irq", "softirq", "steal", "guest", "guestnice")


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    finally:
        os.close(fd)


def diskstats(path: str = "/proc/diskstats") -> list[dict[str, Any]]:
    """Every line of /proc/diskstats with qemu-ga's field selection by field count."""
    entries: list[dict[str, Any]] = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        try:
            major, minor = int(parts[0]), int(parts[1])
            values = [int(p) for p in parts[3:20]]
        except ValueError:
            continue
        fields = 3 + len(values)
        stats: dict[str, int] = {}
        if fields == 7:
            stats.update(
                read_ios=values[0],
                read_sectors=values[1],
                write_ios=values[2],
                write_sectors=values[3],
            )
        if fields >= 14:
            stats.update(zip(_DISK_14, values[:11], strict=True))
        if fields >= 18:
            stats.update(zip(_DISK_18, values[11:15], strict=True))
        if fields >= 20:
            stats.update(zip(_DISK_20, values[15:17], strict=True))
        entries.append({"name": parts[2], "major": major, "minor": minor, "stats": stats})
    return entries


def cpustats(path: str = "/proc/stat") -> list[dict[str, Any]]:
    """Per-CPU times in milliseconds (USER_HZ ticks * 1000 / USER_HZ)."""
    tck = os.sysconf("SC_CLK_TCK") or 100
    entries: list[dict[str, Any]] = []
    for line in _read(path).splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu") or parts[0] == "cpu":
            continue
        try:
            cpu = int(parts[0][3:])
            ticks = [int(p) for p in parts[1:11]]
        except ValueError:
            continue
        if len(ticks) < 4:
            break
        ms = [t * 1000 // tck for t in ticks]
        entry: dict[str, Any] = {
            "cpu": cpu,
            "user": ms[0],
            "nice": ms[1],
            "system": ms[2],
            "idle": ms[3],
        }
        entry.update(zip(_CPU_OPTIONAL, ms[4:], strict=False))
        entries.append(entry)
    return entries


def memory(meminfo: str = "/proc/meminfo", vmstat: str = "/proc/vmstat") -> dict[str, int]:
    """Memory sizes in bytes and the swap/page-fault counters oVirt derives rates from."""
    kib: dict[str, int] = {}
    for line in _read(meminfo).splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            kib[key] = int(parts[0])
    vm = {key: int(value) for key, value in _VMSTAT.findall(_read(vmstat))}
    return {
        "total": kib.get("MemTotal", 0) * 1024,
        "free": kib.get("MemFree", 0) * 1024,
        "available": kib.get("MemAvailable", kib.get("MemFree", 0)) * 1024,
        "cached": kib.get("Cached", 0) * 1024,
        "buffers": kib.get("Buffers", 0) * 1024,
        "swap_total": kib.get("SwapTotal", 0) * 1024,
        "swap_free": kib.get("SwapFree", 0) * 1024,
        "swap_in": vm.get("pswpin", 0),
        "swap_out": vm.get("pswpout", 0),
        "pageflt": vm.get("pgfault", 0),
        "majflt": vm.get("pgmajfault", 0),
    }
