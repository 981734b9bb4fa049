"""Renders protocol-neutral actor answers (monitor, sso) into oVirt guest->host arguments.

Pure functions and one small stateful rate computer; every function returns the argument dict
of one message with exactly the members and types vdsm's handlers require (see the reference,
section 5 item 7). Must not import the runtime, zmq or any actor package.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from typing import Any

#: minimum negotiated API version for each guest->host message (sender-side gating)
MIN_VERSION: Mapping[str, int] = {
    "number-of-cpus": 1,
    "os-info": 2,
    "timezone": 2,
    "containers": 3,
    "completion": 3,
}

#: the highest API version this agent (and vdsm master) speaks
MAX_VERSION = 3

_KIB = 1024
_MIB = 1024 * 1024
_ARCH = {"i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "amd64": "x86_64"}


def _get(data: Mapping[str, Any], *keys: str, default: Any = "") -> Any:
    """First present key among spellings (``kernel_release`` / ``kernel-release``)."""
    for key in keys:
        for spelling in (key, key.replace("_", "-")):
            value = data.get(spelling)
            if value not in (None, ""):
                return value
    return default


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class MemoryRates:
    """Turns cumulative counters (swap in/out, page faults) into per-second rates like OGA."""

    _COUNTERS = ("swap_in", "swap_out", "pageflt", "majflt")

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, int]] | None = None

    def rates(self, now: float, memory: Mapping[str, Any]) -> dict[str, int]:
        """Rates since the previous sample (0 on the first one or after a counter reset)."""
        current = {key: _int(memory.get(key)) for key in self._COUNTERS}
        out = dict.fromkeys(self._COUNTERS, 0)
        if self._last is not None:
            then, previous = self._last
            elapsed = now - then
            if elapsed > 0:
                for key in self._COUNTERS:
                    delta = current[key] - previous[key]
                    out[key] = int(delta / elapsed) if delta > 0 else 0
        self._last = (now, current)
        return out


def heartbeat(memory: Mapping[str, Any] | None, rates: Mapping[str, int], api_version: int) -> dict[str, Any]:
    """``heartbeat``: free-ram (MiB, a string as OGA sent it), memory-stat (KiB, rates/s)."""
    args: dict[str, Any] = {"apiVersion": api_version}
    if not memory:
        args["free-ram"] = "0"
        return args
    total = _int(memory.get("total"))
    free = _int(memory.get("free"))
    buffers = _int(memory.get("buffers"))
    cached = _int(memory.get("cached"))
    swap_total = _int(memory.get("swap_total"))
    swap_free = _int(memory.get("swap_free"))
    usable = free + buffers + cached
    args["free-ram"] = str(usable // _MIB)
    args["memory-stat"] = {
        "mem_total": total // _KIB,
        "mem_unused": free // _KIB,
        "mem_free": usable // _KIB,
        "mem_buffers": buffers // _KIB,
        "mem_cached": cached // _KIB,
        "swap_total": swap_total // _KIB,
        "swap_usage": max(0, swap_total - swap_free) // _KIB,
        "swap_in": rates.get("swap_in", 0),
        "swap_out": rates.get("swap_out", 0),
        "pageflt": rates.get("pageflt", 0),
        "majflt": rates.get("majflt", 0),
    }
    return args


def host_name(hostname: Mapping[str, Any]) -> dict[str, Any]:
    """``host-name``: the short host name (OGA sent getfqdn(); vdsm shows it as guestName)."""
    return {"name": str(_get(hostname, "hostname", default="") or _get(hostname, "fqdn"))}


def fqdn(hostname: Mapping[str, Any]) -> dict[str, Any]:
    """``fqdn``: the fully qualified name (falls back to the host name)."""
    return {"fqdn": str(_get(hostname, "fqdn", default="") or _get(hostname, "hostname"))}


def os_version(osinfo: Mapping[str, Any]) -> dict[str, Any]:
    """``os-version``: the kernel release (``uname -r``)."""
    return {"version": str(_get(osinfo, "kernel_release", default=platform.release()))}


def os_info(osinfo: Mapping[str, Any]) -> dict[str, Any]:
    """``os-info``: distribution facts, arch mapped to the engine's names."""
    arch = str(_get(osinfo, "machine", "arch", default=platform.machine()))
    return {
        "version": str(_get(osinfo, "version_id", "version")),
        "distribution": str(_get(osinfo, "name", "distribution")),
        "codename": str(_get(osinfo, "version_codename", "variant", "codename")),
        "arch": _ARCH.get(arch, arch),
        "type": "linux",
        "kernel": str(_get(osinfo, "kernel_release", default=platform.release())),
    }


def timezone(tz: Mapping[str, Any]) -> dict[str, Any]:
    """``timezone``: IANA name and offset in minutes east of UTC (monitor gives seconds)."""
    return {"zone": str(tz.get("zone") or "UTC"), "offset": _int(tz.get("offset")) // 60}


def network_interfaces(answer: Mapping[str, Any], ignored: Iterable[str]) -> dict[str, Any]:
    """``network-interfaces``: OGA's ``{name, hw, inet, inet6}`` list, loopback and ignored out."""
    skip = set(ignored)
    out: list[dict[str, Any]] = []
    for nic in answer.get("interfaces") or []:
        if not isinstance(nic, Mapping):
            continue
        name = str(nic.get("name", ""))
        if not name or name == "lo" or name in skip:
            continue
        addresses = [a for a in nic.get("addresses") or [] if isinstance(a, Mapping)]
        out.append(
            {
                "name": name,
                "hw": str(nic.get("hwaddr") or ""),
                "inet": [str(a.get("address")) for a in addresses if a.get("family") == "ipv4"],
                "inet6": [str(a.get("address")) for a in addresses if a.get("family") == "ipv6"],
            }
        )
    return {"interfaces": out}


def applications(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``applications``: list of ``name-version`` strings."""
    out: list[str] = []
    for app in answer.get("applications") or []:
        if isinstance(app, str):
            out.append(app)
        elif isinstance(app, Mapping) and app.get("name"):
            version = app.get("version")
            out.append(f"{app['name']}-{version}" if version else str(app["name"]))
    return {"applications": out}


def disks_usage(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``disks-usage``: path/fs/total/used in bytes plus the serial -> device mapping."""
    disks: list[dict[str, Any]] = []
    mapping: dict[str, dict[str, str]] = {}
    for fs in answer.get("filesystems") or []:
        if not isinstance(fs, Mapping):
            continue
        total = _int(fs.get("total_bytes"))
        if total <= 0:
            continue
        disks.append(
            {
                "path": str(fs.get("mountpoint", "")),
                "fs": str(fs.get("type", "")),
                "total": total,
                "used": _int(fs.get("used_bytes")),
            }
        )
        for dev in fs.get("disks") or []:
            if isinstance(dev, Mapping) and dev.get("serial") and dev.get("dev"):
                mapping[str(dev["serial"])] = {"name": str(dev["dev"])}
    return {"disks": disks, "mapping": mapping}


def number_of_cpus(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``number-of-cpus``: online CPU count."""
    return {"count": _int(answer.get("count"))}


def active_user(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``active-user``: the console user, the literal string ``"None"`` for nobody."""
    name = answer.get("name")
    return {"name": str(name) if name else "None"}


def containers(answer: Mapping[str, Any]) -> dict[str, Any]:
    """``containers``: the Docker-API subset OGA sent."""
    out = []
    for item in answer.get("containers") or answer.get("list") or []:
        if isinstance(item, Mapping):
            out.append(
                {
                    "id": str(item.get("id", "")),
                    "names": [str(n) for n in item.get("names") or []],
                    "image": str(item.get("image", "")),
                    "command": str(item.get("command", "")),
                    "status": str(item.get("status", "")),
                }
            )
    return {"list": out}
