"""What every host channel offers the transport actor, and how channels are built from specs.

A channel owns one endpoint (a port, a listening socket ...) and creates one front-end per
attached stream through ``make_frontend``. State changes (a host attached or left) are reported
through ``on_state`` so the actor can publish events and health. Standard library only; the
concrete channel modules are imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from concierge.runtime.node import NodeContext
from concierge.transport.host.api import FrontEnd, HostLink

METHODS = ("virtio-serial", "isa-serial", "unix-listen", "unix-connect", "vsock-listen")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One configured channel: ``NAME=METHOD:PATH`` plus the protocol spoken on it."""

    name: str
    protocol: str
    method: str
    path: str


MakeFrontEnd = Callable[[HostLink], FrontEnd]
OnState = Callable[["Channel", bool], None]


class Channel(Protocol):
    """A host endpoint driven on the bridge thread."""

    spec: ChannelSpec

    @property
    def attached(self) -> bool:
        """True while at least one host is attached."""
        ...

    def start(self) -> None:
        """Open (or schedule opening) the endpoint; never raises for a missing device."""
        ...

    def stop(self) -> None:
        """Close everything."""
        ...

    def frontends(self) -> list[Any]:
        """Front-ends currently bound to attached streams (for event fan-out)."""
        ...

    def status(self) -> dict[str, Any]:
        """State for health detail: attached, clients, open, errors."""
        ...


def make_channel(
    ctx: NodeContext,
    spec: ChannelSpec,
    make_frontend: MakeFrontEnd,
    on_state: OnState,
    **options: Any,
) -> Channel:
    """Build the channel class for ``spec.method``."""
    if spec.method in ("virtio-serial", "isa-serial"):
        from concierge.transport.host.port import PortChannel  # noqa: PLC0415 - lazy by design

        return PortChannel(ctx, spec, make_frontend, on_state, **options)
    if spec.method in ("unix-listen", "vsock-listen"):
        from concierge.transport.host.listen import ListenChannel  # noqa: PLC0415

        return ListenChannel(ctx, spec, make_frontend, on_state, **options)
    if spec.method == "unix-connect":
        from concierge.transport.host.connect import ConnectChannel  # noqa: PLC0415

        return ConnectChannel(ctx, spec, make_frontend, on_state, **options)
    raise ValueError(f"unknown channel method {spec.method!r} (one of {', '.join(METHODS)})")
