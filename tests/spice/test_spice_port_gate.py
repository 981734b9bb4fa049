"""The SPICE port stays closed while no session agent is ready (issue 15 item 8).

spice-vdagentd keeps ``com.redhat.spice.0`` closed until a session agent reported its geometry:
spice-server offers client mouse mode exactly while the guest holds the port open, so an agent
that opens it at boot with no session leaves the emulated tablet unusable on a text console or
a guest without a desktop. The transport here runs its real port channel on a pty standing in
for the virtio port (the test is the host on the master side) and hears the gateway's
``session.spice_ready`` events as the transport node does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from concierge.actors.hostlink.node import HostLinkNode
from concierge.testing.context import FakeContext
from concierge.testing.ptyport import PtyPort


def _agent_holds(port: PtyPort) -> bool:
    """True when this process has the port's device open (the test's own keep-alive aside)."""
    device = os.path.realpath(port.path)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == port._slave_keep:
            continue
        try:
            if os.readlink(f"/proc/self/fd/{name}") == device:
                return True
        except OSError:
            continue
    return False


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_port_open_only_while_a_session_agent_is_ready(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "virtio-ports" / "com.redhat.spice.0")
    channel = {"name": "spice", "protocol": "spice", "method": "virtio-serial", "path": str(port.path)}
    ctx = FakeContext("transport", {"channels": [channel]})
    ctx.run_node(HostLinkNode)
    try:
        time.sleep(0.5)  # ample for an eager open (it used to happen at start)
        assert not _agent_holds(port), "port opened at boot without a session"
        assert port.drain(0.2) == b""
        ctx.tell("session.spice_ready", {"ready": True}, kind="evt")
        assert _wait(lambda: _agent_holds(port)), "port not opened when the session agent was ready"
        assert _wait(lambda: bool(port.drain(0.2))), "no capability announce after opening"
        ctx.tell("session.spice_ready", {"ready": False}, kind="evt")
        assert _wait(lambda: not _agent_holds(port)), "port still open after the last session left"
        ctx.tell("session.spice_ready", {"ready": True}, kind="evt")  # a new session: open again
        assert _wait(lambda: _agent_holds(port))
    finally:
        ctx.close()
        port.close()


def test_other_ports_still_open_at_once(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "virtio-ports" / "org.qemu.guest_agent.0")
    channel = {"name": "qga", "protocol": "qga", "method": "virtio-serial", "path": str(port.path)}
    ctx = FakeContext("transport", {"channels": [channel]})
    ctx.run_node(HostLinkNode)
    try:
        assert _wait(lambda: _agent_holds(port))
    finally:
        ctx.close()
        port.close()
