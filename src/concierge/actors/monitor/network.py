"""Network interfaces: names, hardware addresses and IP addresses (getifaddrs via psutil,
SIOCGIFHWADDR as qemu-ga), cached until rtnetlink reports a link/address change; counters
from /proc/net/dev on every request. Excludes and cap are applied per request.

Must not import the node or transport code.
"""

from __future__ import annotations

import fcntl
import fnmatch
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

import psutil

log = logging.getLogger(__name__)

SIOCGIFHWADDR = 0x8927
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100
_STAT_KEYS = (
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_dropped",
)


def hardware_address(sock: socket.socket, name: str) -> str | None:
    """First 6 bytes of the interface's hardware address, formatted as qemu-ga does."""
    request = struct.pack("16s16x", name.encode()[:15])
    try:
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    except OSError:
        return None
    return ":".join(f"{byte:02x}" for byte in reply[18:24])


def _prefix(netmask: str | None) -> int:
    if not netmask:
        return 0
    try:
        return bin(int(ipaddress.ip_address(netmask))).count("1")
    except ValueError:
        return 0


def read_net_dev(path: str = "/proc/net/dev") -> dict[str, dict[str, int]]:
    """Per-interface counters (the 8 that QGA reports)."""
    stats: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()[2:]
    except OSError:
        return stats
    for line in lines:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) < 12:
            continue
        nums = [int(values[i]) for i in (0, 1, 2, 3, 8, 9, 10, 11)]
        stats[name.strip()] = dict(zip(_STAT_KEYS, nums, strict=True))
    return stats


class LinkWatch:
    """An rtnetlink socket subscribed to link and address changes; ``changed()`` drains it."""

    def __init__(self) -> None:
        self._sock: socket.socket | None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
            sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
            self._sock = sock
        except OSError as err:  # no netlink (odd sandbox): every request rebuilds
            log.warning("rtnetlink unavailable: %s", err, extra={"event": "monitor.no_netlink"})
            self._sock = None

    def changed(self) -> bool:
        """True when something changed since the last call (or when we cannot tell)."""
        if self._sock is None:
            return True
        seen = False
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return seen
            except OSError:  # ENOBUFS: we lost events, so assume a change
                seen = True
                continue
            if not data:
                return seen
            seen = True

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()


class InterfaceProbe:
    """Builds ``monitor.interfaces`` replies; thread-safe."""

    def __init__(self, net_dev: str = "/proc/net/dev") -> None:
        self._net_dev = net_dev
        self._watch = LinkWatch()
        self._ioctl_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._cached: list[tuple[str, str | None, list[dict[str, Any]]]] | None = None
        self.rebuilds = 0

    def _layout(self) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        with self._lock:
            if self._cached is None or self._watch.changed():
                if self._cached is None:
                    self._watch.changed()  # drain what queued before the first build
                self._cached = self._build()
                self.rebuilds += 1
            return self._cached

    def _build(self) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        layout: list[tuple[str, str | None, list[dict[str, Any]]]] = []
        by_name = psutil.net_if_addrs()
        # getifaddrs (hence qemu-ga) lists links in ifindex order; psutil's dict does not
        rank = {name: index for index, name in socket.if_nameindex()}
        for name in sorted(by_name, key=lambda n: rank.get(n, 1 << 30)):
            addrs = by_name[name]
            addresses: list[dict[str, Any]] = []
            for addr in addrs:
                if addr.family == socket.AF_INET:
                    family = "ipv4"
                elif addr.family == socket.AF_INET6:
                    family = "ipv6"
                else:
                    continue
                addresses.append(
                    {
                        "family": family,
                        "address": addr.address.split("%", 1)[0],
                        "prefix": _prefix(addr.netmask),
                    }
                )
            layout.append((name, hardware_address(self._ioctl_sock, name), addresses))
        return layout

    def probe(self, excludes: Sequence[str], cap: int) -> dict[str, Any]:
        """The reply body of ``monitor.interfaces`` for one exclude list and cap (0 = none)."""
        layout = self._layout()
        counters = read_net_dev(self._net_dev)
        interfaces: list[dict[str, Any]] = []
        excluded = 0
        truncated = False
        for name, hwaddr, addresses in layout:
            if any(fnmatch.fnmatchcase(name, glob) for glob in excludes):
                excluded += 1
                continue
            if cap and len(interfaces) >= cap:
                truncated = True
                continue
            stats = counters.get(name)
            interfaces.append(
                {
                    "name": name,
                    "hwaddr": hwaddr,
                    "addresses": [dict(a) for a in addresses],
                    "stats": dict(stats) if stats is not None else None,
                }
            )
        return {"interfaces": interfaces, "excluded": excluded, "truncated": truncated}

    def close(self) -> None:
        """Release sockets."""
        self._watch.close()
        self._ioctl_sock.close()
