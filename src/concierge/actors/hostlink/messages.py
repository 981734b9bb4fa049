"""Public API of the transport actor (id ``transport``): its request and the events it emits.

Standard library and msgspec only.

Events published (lossy event plane; re-query with ``transport.status``):

- ``host.connected`` ``{"channel": NAME, "protocol": "qga"|"ovirt"|"spice"}``: a host attached
  to channel NAME (virtio: POLLHUP cleared; sockets: the first client connected).
- ``host.disconnected`` (same body): the last host left the channel.

Events consumed: ``lifecycle.frozen`` and ``lifecycle.thawed`` (from lifecycle), forwarded to
every front-end that has an ``event(topic, body)`` method (the QGA front-end applies qemu-ga's
freeze-time allow-list with them).
"""

from __future__ import annotations

from typing import TypedDict

import msgspec

STATUS = "transport.status"
HOST_CONNECTED = "host.connected"
HOST_DISCONNECTED = "host.disconnected"


class HostEvent(TypedDict):
    """Body of ``host.connected`` / ``host.disconnected``."""

    channel: str
    protocol: str


class ChannelStatus(msgspec.Struct):
    """One channel in the ``transport.status`` reply."""

    name: str
    protocol: str
    method: str
    path: str
    attached: bool
    open: bool = False
    clients: int = 0
    error: str = ""


class StatusReply(msgspec.Struct):
    """Reply to ``transport.status`` (any sender, empty body, answered at once, timeout 1 s)."""

    channels: list[ChannelStatus]
