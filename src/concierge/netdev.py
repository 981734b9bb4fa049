"""Per-interface counters from /proc/net/dev, the 8 that QGA reports.

Shared by the monitor (its ``monitor.interfaces`` answers) and the transport, which completes a
pushed interface layout with live counters inline (see ``concierge.runtime.pushed``): the
layout changes only on netlink events, the counters on every packet. Standard library only.
"""

from __future__ import annotations

STAT_KEYS = (
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_dropped",
)
_COLUMNS = (0, 1, 2, 3, 8, 9, 10, 11)


def read_net_dev(path: str = "/proc/net/dev") -> dict[str, dict[str, int]]:
    """Interface name -> its counters; empty when the file cannot be read."""
    stats: dict[str, dict[str, int]] = {}
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode("ascii", "replace").splitlines()[2:]
    except OSError:
        return stats
    for line in lines:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) < 12:
            continue
        try:
            nums = [int(values[i]) for i in _COLUMNS]
        except ValueError:
            continue
        stats[name.strip()] = dict(zip(STAT_KEYS, nums, strict=True))
    return stats
