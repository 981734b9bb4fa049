"""Helpers shared by the SPICE tests (a uniquely named module, importable from any test file)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from concierge.runtime.node import Lane
from concierge.testing.fdloop import PollingFakeContext
from concierge.testing.spice_host import LinkNode, SpiceHost, pty_channel, unix_channel


class RecordingContext(PollingFakeContext):
    """Also records the lane and ttl of every cast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lanes: list[tuple[str, str, Lane, float]] = []

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        lane: Lane = "default",
        ttl_s: float = 5.0,
    ) -> None:
        self.lanes.append((dst, type, lane, ttl_s))
        self.blobs_seen.append(blobs)
        super().cast(dst, type, body, blobs=blobs, lane=lane, ttl_s=ttl_s)

    blobs_seen: list[tuple[bytes, ...]]


def wait_for(cond: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``cond`` until truthy (generous bound; never a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


Pair = tuple[SpiceHost, RecordingContext]


@pytest.fixture(params=["unix", "pty"])
def spice_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """The SPICE front-end in a LinkNode over a unix socket pair or a pty, and the host end."""
    host_fd, guest_fd = unix_channel() if request.param == "unix" else pty_channel()
    ctx = RecordingContext("transport", {"fd": guest_fd, "name": "spice"})
    ctx.blobs_seen = []
    ctx.run_node(LinkNode)
    host = SpiceHost(host_fd)
    try:
        yield host, ctx
    finally:
        ctx.close()
        os.close(host_fd)
