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
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from concierge.netdev import read_net_dev

log = logging.getLogger(__name__)
#: one interface of the layout: name, hardware address, addresses
_Link = tuple[str, str | None, list[dict[str, Any]]]

SIOCGIFHWADDR = 0x8927
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100


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

    def fileno(self) -> int | None:
        """The socket's fd, or None without netlink."""
        return self._sock.fileno() if self._sock is not None else None

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
        self._cached: list[_Link] | None = None
        self.rebuilds = 0
        #: called (on the thread that noticed) after the layout was rebuilt
        self.on_rebuild: Callable[[], None] | None = None

    def _layout(self) -> list[_Link]:
        with self._lock:
            layout = self._cached
            changed = layout is not None and self._watch.changed()
            if layout is None or changed:
                if layout is None:
                    self._watch.changed()  # drain what queued before the first build
                layout = self._cached = self._build()
                self.rebuilds += 1
        if changed and self.on_rebuild is not None:
            self.on_rebuild()
        return layout

    def _build(self) -> list[_Link]:
        layout: list[_Link] = []
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

    def _select(self, excludes: Sequence[str], cap: int) -> tuple[list[_Link], int, bool]:
        """The layout's interfaces after ``excludes`` and ``cap``, how many were excluded, and
        whether the cap cut the list."""
        chosen: list[_Link] = []
        excluded = 0
        truncated = False
        for link in self._layout():
            if any(fnmatch.fnmatchcase(link[0], glob) for glob in excludes):
                excluded += 1
                continue
            if cap and len(chosen) >= cap:
                truncated = True
                continue
            chosen.append(link)
        return chosen, excluded, truncated

    def probe(self, excludes: Sequence[str], cap: int) -> dict[str, Any]:
        """The reply body of ``monitor.interfaces`` for one exclude list and cap (0 = none)."""
        chosen, excluded, truncated = self._select(excludes, cap)
        counters = read_net_dev(self._net_dev)
        interfaces: list[dict[str, Any]] = []
        for name, hwaddr, addresses in chosen:
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

    def layout_body(self, excludes: Sequence[str], cap: int) -> dict[str, Any]:
        """The same without counters, which change on every packet, and with the file they
        come from: the layout is pushed on change and the receiver reads the counters."""
        chosen, excluded, truncated = self._select(excludes, cap)
        interfaces = [
            {"name": name, "hwaddr": hwaddr, "addresses": [dict(a) for a in addresses]}
            for name, hwaddr, addresses in chosen
        ]
        return {"interfaces": interfaces, "excluded": excluded, "truncated": truncated, "net_dev": self._net_dev}

    def watch_fileno(self) -> int | None:
        """The rtnetlink socket (readable on a link or address change), if there is one."""
        return self._watch.fileno()

    def check(self, _revents: int = 0) -> None:
        """Drain the rtnetlink socket and rebuild the layout if it changed (its fd callback)."""
        self._layout()

    def close(self) -> None:
        """Release sockets."""
        self._watch.close()
        self._ioctl_sock.close()
