"""The contract between a host channel (bytes to and from the hypervisor) and a protocol
front-end (qga, ovirt, spice). Both live in the transport actor and run on its bridge thread.
Standard library only.
"""

from __future__ import annotations

from typing import Protocol


class HostLink(Protocol):
    """One host channel as a front-end sees it."""

    #: channel name from the command line or config, e.g. ``qga``
    name: str

    @property
    def connected(self) -> bool:
        """True while a host is attached (virtio: no POLLHUP; sockets: a client is connected)."""
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the host; never blocks, completes short writes in order.

        Bytes queued while no host is attached are dropped when the host goes away, so a host
        that comes back never sees half a message.
        """
        ...


class FrontEnd(Protocol):
    """A protocol decoder/encoder bound to one host channel."""

    def connected(self) -> None:
        """A host attached (or re-attached)."""
        ...

    def received(self, data: bytes) -> None:
        """Bytes arrived from the host (any split: partial frames, several frames)."""
        ...

    def disconnected(self) -> None:
        """The host went away; drop partial input and anything waiting to be written."""
        ...

    def close(self) -> None:
        """The transport actor is stopping."""
        ...
