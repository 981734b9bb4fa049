"""Channel specs: parse ``NAME=METHOD:PATH`` and detect the default channels of this guest.

Defaults follow the virtio port names the hypervisors use; when a port is absent (a container,
a test machine) the channel falls back to a unix socket under the runtime dir, so hosts and
tests can still reach the agent. Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from concierge.transport.host.channel import METHODS

PROTOCOLS = ("qga", "ovirt", "spice")
VIRTIO_PORTS: dict[str, tuple[str, ...]] = {
    "qga": ("org.qemu.guest_agent.0",),
    # the legacy vdsm port name wins when both exist (vdsm talks on whichever it created)
    "ovirt": ("com.redhat.rhevm.vdsm", "ovirt-guest-agent.0"),
    "spice": ("com.redhat.spice.0",),
}


def parse_channel(text: str, protocol: str | None = None) -> dict[str, Any]:
    """``qga=virtio-serial:/dev/virtio-ports/org.qemu.guest_agent.0`` -> a channel dict.

    The protocol is ``protocol`` when given, else the channel name (which must then be one of
    qga, ovirt, spice). Vsock paths keep their colon: ``qga=vsock-listen:3:1234``.
    """
    name, sep, rest = text.partition("=")
    method, sep2, path = rest.partition(":")
    name = name.strip()
    if not sep or not sep2 or not name or not path:
        raise ValueError(f"channel must look like NAME=METHOD:PATH, got {text!r}")
    if method not in METHODS:
        raise ValueError(f"unknown channel method {method!r} in {text!r} (one of {', '.join(METHODS)})")
    proto = protocol or name
    if proto not in PROTOCOLS:
        raise ValueError(f"channel {name!r} needs a protocol (one of {', '.join(PROTOCOLS)})")
    return {"name": name, "protocol": proto, "method": method, "path": path}


def default_channels(runtime_dir: Path, dev_dir: Path = Path("/dev/virtio-ports")) -> list[dict[str, Any]]:
    """One channel per protocol: its virtio port when present, else a unix-listen socket."""
    channels: list[dict[str, Any]] = []
    for proto in PROTOCOLS:
        port = next((dev_dir / name for name in VIRTIO_PORTS[proto] if (dev_dir / name).exists()), None)
        if port is not None:
            channels.append({"name": proto, "protocol": proto, "method": "virtio-serial", "path": str(port)})
        else:
            sock = runtime_dir / "channels" / f"{proto}.sock"
            channels.append({"name": proto, "protocol": proto, "method": "unix-listen", "path": str(sock)})
    return channels
