"""oVirt guest agent protocol (vdsm's ``ovirt-guest-agent.0`` channel) front-end."""

from concierge.transport.ovirt.frontend import OvirtFrontEnd

#: guest port names, preferred first (the old agent opened the legacy name when both existed)
PORT_NAMES = ("com.redhat.rhevm.vdsm", "ovirt-guest-agent.0")

__all__ = ["PORT_NAMES", "OvirtFrontEnd"]
