"""Fake capability actors and QGA routes for front-end tests (no monitor/lifecycle/guestops).

``FAKE_ROUTES`` maps a handful of commands to fake actors; :func:`fake_peers` answers them;
:class:`FakeRoutedQgaFrontEnd` is a QgaFrontEnd using those routes, so a transport node can be
configured with ``frontends = {"qga": "concierge.testing.qgafakes:FakeRoutedQgaFrontEnd"}``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from concierge.errors import ActorError, ErrorCode
from concierge.runtime.node import NodeContext
from concierge.transport.host.api import HostLink
from concierge.transport.qga import argspec
from concierge.transport.qga.commands.registry import QgaRoute
from concierge.transport.qga.frontend import QgaFrontEnd

FAKE_ROUTES: dict[str, QgaRoute] = {
    route.command: route
    for route in (
        QgaRoute(
            "guest-get-host-name",
            "monitor",
            "monitor.hostname",
            render=lambda body: {"host-name": body},
        ),
        QgaRoute("guest-get-time", "lifecycle", "lifecycle.time"),
        QgaRoute(
            "guest-fsfreeze-status",
            "lifecycle",
            "lifecycle.freeze_status",
            allowed_while_frozen=True,
        ),
        QgaRoute("guest-fsfreeze-freeze", "lifecycle", "lifecycle.freeze"),
        QgaRoute("guest-fsfreeze-freeze-list", "lifecycle", "lifecycle.freeze"),
        QgaRoute("guest-fsfreeze-thaw", "lifecycle", "lifecycle.thaw", allowed_while_frozen=True),
        QgaRoute("guest-shutdown", "lifecycle", "lifecycle.shutdown", success_response=False),
        QgaRoute("guest-get-fsinfo", "monitor", "monitor.slow", timeout_s=0.5),
        QgaRoute("guest-get-disks", "monitor", "monitor.slow", timeout_s=30.0),
        QgaRoute("guest-file-open", "guestops", "guestops.fail"),
        QgaRoute("guest-set-vcpus", "lifecycle", "lifecycle.echo"),
        QgaRoute("guest-exec", "guestops", "guestops.echo"),
    )
}


for _spec in argspec.COMMANDS:
    if _spec.name not in FAKE_ROUTES and _spec.name not in argspec.PROTOCOL_COMMANDS:
        FAKE_ROUTES[_spec.name] = QgaRoute(
            _spec.name, "monitor", "fake.generic", success_response=_spec.success_response
        )


#: for benchmarks: every command answers at once except guest-fstrim, which is the slow one
BENCH_ROUTES: dict[str, QgaRoute] = {
    **{
        name: QgaRoute(name, "monitor", "fake.generic", success_response=route.success_response)
        for name, route in FAKE_ROUTES.items()
    },
    "guest-fstrim": QgaRoute("guest-fstrim", "monitor", "monitor.slow", timeout_s=30.0),
}


class FakeCapabilities:
    """The fake actors behind FAKE_ROUTES; ``release`` ends a pending ``monitor.slow``."""

    def __init__(self, slow_s: float = 2.0) -> None:
        self.slow_s = slow_s
        self.release = threading.Event()
        self.calls: list[tuple[str, Any]] = []
        #: what ``guest-fsfreeze-status`` reports
        self.freeze_state = "thawed"

    def __call__(self, type_: str, body: Any) -> Any:
        self.calls.append((type_, body))
        if type_ == "monitor.hostname":
            return socket.gethostname()
        if type_ == "lifecycle.time":
            return time.time_ns()
        if type_ == "lifecycle.freeze_status":
            return self.freeze_state
        if type_ == "lifecycle.freeze":
            return 1
        if type_ == "lifecycle.thaw":
            return 1
        if type_ == "lifecycle.shutdown":
            if body.get("mode") == "halt":
                raise ActorError(ErrorCode.INTERNAL, "halt is not possible here")
            return None
        if type_ == "monitor.slow":
            self.release.wait(self.slow_s)
            return []
        if type_ == "guestops.fail":
            raise ActorError(ErrorCode.NOT_FOUND, f"failed to open file '{body['path']}'")
        if type_ == "fake.generic":
            return {}
        if type_ in ("lifecycle.echo", "guestops.echo"):
            return body
        raise ActorError(ErrorCode.UNKNOWN_TYPE, type_)

    def peers(self) -> dict[str, Any]:
        """Peers for FakeContext."""
        return {"monitor": self, "lifecycle": self, "guestops": self}


class FakeRoutedQgaFrontEnd(QgaFrontEnd):
    """QgaFrontEnd with FAKE_ROUTES instead of the real capability routes."""

    def __init__(self, ctx: NodeContext, link: HostLink, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, link, settings, routes=FAKE_ROUTES)


class FakeBenchQgaFrontEnd(QgaFrontEnd):
    """QgaFrontEnd with BENCH_ROUTES (only guest-fstrim is slow)."""

    def __init__(self, ctx: NodeContext, link: HostLink, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, link, settings, routes=BENCH_ROUTES)
