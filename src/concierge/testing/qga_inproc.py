"""The transport actor in-process behind real channels, with fake capability actors (tests).

:func:`start_agent` runs :class:`~concierge.actors.hostlink.node.HostLinkNode` in a
:class:`~concierge.testing.pollctx.PollingContext` on a unix-listen socket (or given channels),
with the routes and fake actors of :mod:`concierge.testing.qgafakes`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from concierge.actors.hostlink.node import HostLinkNode
from concierge.testing.pollctx import PollingContext
from concierge.testing.qga_peer import wait_for_socket
from concierge.testing.qgafakes import FakeCapabilities

FAKE_FRONTEND = "concierge.testing.qgafakes:FakeRoutedQgaFrontEnd"


@dataclass
class Agent:
    """Our transport node running in-process with fake capability actors."""

    ctx: PollingContext
    node: HostLinkNode
    socket_path: Path
    fake: FakeCapabilities

    def wait_published(self, topic: str, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until ``topic`` was published ``count`` times."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for t, _ in self.ctx.published if t == topic) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not published; got {self.ctx.published}")
            time.sleep(0.01)


def start_agent(
    tmp: Path,
    *,
    qga_settings: dict[str, Any] | None = None,
    channels: list[dict[str, Any]] | None = None,
    slow_s: float = 5.0,
    flag_style: str = "select",
) -> Agent:
    """Start HostLinkNode on a unix-listen socket (or ``channels``)."""
    sock = tmp / "agent" / "qga.sock"
    fake = FakeCapabilities(slow_s=slow_s)
    settings: dict[str, Any] = {
        "channels": channels or [{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)}],
        "frontends": {"qga": FAKE_FRONTEND},
        "protocol_settings": {"qga": qga_settings or {}},
        "recheck_s": 0.1,
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.2,
    }
    ctx = PollingContext("transport", settings, runtime_dir=tmp, peers=fake.peers(), flag_style=flag_style)
    node = ctx.run_node(HostLinkNode)
    if not isinstance(node, HostLinkNode):
        raise TypeError("HostLinkNode expected")
    if channels is None:
        wait_for_socket(sock)
    return Agent(ctx, node, sock, fake)
