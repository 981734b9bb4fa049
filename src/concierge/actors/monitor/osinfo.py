"""Identity of the guest: uname + os-release (qemu-ga's osinfo keys), host name and FQDN,
time zone, load average and CPU count. Must not import the node or transport code.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

_OS_RELEASE_KEYS = (
    ("ID", "id"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty-name"),
    ("VERSION", "version"),
    ("VERSION_ID", "version-id"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant-id"),
)


def unquote_os_release(value: str) -> str:
    """Strip one level of shell quoting and backslash escapes, as qemu-ga does."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value assignments of an os-release file."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = unquote_os_release(value)
    return values


#: path -> (identity of the file read, its parsed values)
_release_cache: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}


def _read_os_release(path: str) -> dict[str, str] | None:
    """Parsed os-release, re-read only when the file changed (one stat instead of open, read
    and a parse: the parse alone cost more than qemu-ga's whole answer). None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    identity = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _release_cache.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            release = parse_os_release(handle.read())
    except OSError:
        return None
    _release_cache[path] = (identity, release)
    return release


def osinfo(os_release_paths: Sequence[str]) -> dict[str, Any]:
    """qemu-ga's ``GuestOSInfo`` (kebab-case keys), absent ones omitted."""
    info: dict[str, Any] = {}
    uname = os.uname()
    info["kernel-release"] = uname.release
    info["kernel-version"] = uname.version
    info["machine"] = uname.machine
    for path in os_release_paths:
        release = _read_os_release(path)
        if release is None:
            continue
        for src, dst in _OS_RELEASE_KEYS:
            if src in release:
                info[dst] = release[src]
        break
    return info


def hostname() -> str:
    """gethostname(2)."""
    return socket.gethostname()


def fqdn() -> str:
    """The canonical name of this host from the resolver (may block on DNS: use a deadline)."""
    return socket.getfqdn()


def iana_zone(localtime: str = "/etc/localtime") -> str:
    """IANA name of the local zone (``TZ``, /etc/localtime link, /etc/timezone), or ""."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env and not env.startswith("/"):
        return env
    try:
        target = os.path.realpath(localtime)
    except OSError:
        target = ""
    marker = "/zoneinfo/"
    if marker in target:
        name = target.split(marker, 1)[1]
        for prefix in ("posix/", "right/"):
            name = name.removeprefix(prefix)
        return name
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def timezone() -> dict[str, Any]:
    """Zone abbreviation + offset (seconds east, DST included) as qemu-ga; IANA name and
    standard offset for oVirt."""
    now = time.localtime()
    standard = -time.timezone
    return {
        "zone": now.tm_zone,
        "offset": int(now.tm_gmtoff),
        "iana": iana_zone(),
        "standard_offset": standard,
    }


def load() -> dict[str, float]:
    """getloadavg(3)."""
    one, five, fifteen = os.getloadavg()
    return {"load1m": one, "load5m": five, "load15m": fifteen}


def cpu_count() -> int:
    """Online logical CPUs."""
    return os.cpu_count() or 1
