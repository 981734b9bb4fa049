"""Settings of the transport actor (``[actors.transport.settings]``).

Standard library and msgspec only.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class ChannelSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One host channel (the supervisor fills these from ``--channel NAME=METHOD:PATH``)."""

    name: str
    protocol: Literal["qga", "ovirt", "spice"]
    method: Literal["virtio-serial", "isa-serial", "unix-listen", "unix-connect", "vsock-listen"]
    path: str


DEFAULT_FRONTENDS: dict[str, str] = {
    "qga": "concierge.transport.qga.frontend:QgaFrontEnd",
    "ovirt": "concierge.transport.ovirt.frontend:OvirtFrontEnd",
    "spice": "concierge.transport.spice.frontend:SpiceFrontEnd",
}


class HostLinkSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Channels, front-end classes and per-protocol front-end settings.

    ``channels`` empty means "detect": the virtio ports present, else unix sockets under the
    runtime dir (see :func:`concierge.transport.host.spec.default_channels`).
    """

    channels: list[ChannelSettings] = msgspec.field(default_factory=list)
    #: protocol -> "module:Class" constructed as Cls(ctx, link, settings_mapping)
    frontends: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_FRONTENDS))
    #: protocol -> settings mapping handed to that protocol's front-ends
    protocol_settings: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: virtio "no host" re-check period (seconds)
    recheck_s: float = 0.2
    #: reopen / rebind backoff bounds (seconds)
    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    #: clients served at once per listening channel
    max_clients: int = 16
    #: bytes of small replies buffered per connection for a host that does not read; beyond
    #: it the connection's output is dropped (a large reply is streamed, it does not count)
    max_output_bytes: int = 16 << 20
    #: a large reply is produced only while fewer bytes than this wait for the host (per
    #: connection): the back-pressure that bounds what streaming holds
    output_high_watermark: int = 1 << 20
