"""Routing tables from /proc/net/route and /proc/net/ipv6_route, in qemu-ga's
``GuestNetworkRoute`` shape (snake_case here; the QGA route renders kebab-case).
Must not import the node or transport code.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any


def _ipv4(hex_le: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hex_le, 16)))


def _ipv6(hex32: str) -> str:
    return str(ipaddress.IPv6Address(bytes.fromhex(hex32)))


def routes(proc_net: str = "/proc/net") -> list[dict[str, Any]]:
    """IPv4 routes then IPv6 routes, each in file order; unparsable lines are skipped."""
    found: list[dict[str, Any]] = []
    try:
        with open(f"{proc_net}/route", encoding="ascii") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) < 11:
            continue
        try:
            found.append(
                {
                    "iface": parts[0],
                    "destination": _ipv4(parts[1]),
                    "gateway": _ipv4(parts[2]),
                    "mask": _ipv4(parts[7]),
                    "metric": int(parts[6]),
                    "flags": int(parts[3], 16),
                    "refcnt": int(parts[4]),
                    "use": int(parts[5]),
                    "mtu": int(parts[8]),
                    "window": int(parts[9]),
                    "irtt": int(parts[10]),
                    "version": 4,
                }
            )
        except ValueError:
            continue
    try:
        with open(f"{proc_net}/ipv6_route", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            found.append(
                {
                    "iface": parts[9],
                    "destination": _ipv6(parts[0]),
                    "desprefixlen": str(int(parts[1], 16)),
                    "source": _ipv6(parts[2]),
                    "srcprefixlen": str(int(parts[3], 16)),
                    "nexthop": _ipv6(parts[4]),
                    "metric": int(parts[5], 16),
                    "refcnt": int(parts[6], 16),
                    "use": int(parts[7], 16),
                    "flags": int(parts[8], 16),
                    "version": 6,
                }
            )
        except ValueError:
            continue
    return found
