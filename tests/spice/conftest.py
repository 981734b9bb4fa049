"""Fixtures of the SPICE tests: a test transport (LinkNode) facing a SpiceHost."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from spice_testkit import RecordingContext

from concierge.testing.spice_host import LinkNode, SpiceHost, pty_channel, unix_channel


@pytest.fixture(params=["unix", "pty"])
def spice_pair(request: pytest.FixtureRequest) -> Iterator[tuple[SpiceHost, RecordingContext]]:
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
