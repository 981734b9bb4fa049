"""Per-connection and per-channel limits of the QGA transport (docs/security.md), over real
unix sockets: commands in progress per connection, clients per listening channel."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from concierge.actors.hostlink.node import HostLinkNode
from concierge.testing.pollctx import PollingContext
from concierge.testing.qga_inproc import start_agent
from concierge.testing.qga_peer import RawClient, wait_for_socket
from concierge.testing.qgafakes import FakeCapabilities

PING = b'{"execute":"guest-ping"}'
PONG = b'{"return": {}}\n'
SLOW = b'{"execute":"guest-get-disks"}'  # a routed command the fake holds until released


def test_commands_in_progress_per_connection_are_bounded(tmp_path: Path) -> None:
    running = start_agent(tmp_path, qga_settings={"max_pending": 2}, slow_s=10.0)
    try:
        with RawClient(running.socket_path, timeout_s=10) as client:
            client.send(SLOW + SLOW + SLOW)
            time.sleep(0.3)  # the first two are with the (hung) capability actor
            running.fake.release.set()
            lines = client.read_lines(3)
            assert b"too many commands in progress (2)" in lines[2], lines
            assert all(b'"return"' in line for line in lines[:2]), lines
            assert client.exchange(PING) == [PONG]
    finally:
        running.fake.release.set()
        running.ctx.close()


def _served_client(sock: Path, timeout_s: float = 5.0) -> RawClient:
    """A client the transport has accepted and answers (retrying while a closed one is reaped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        client = RawClient(sock)
        try:
            if client.exchange(PING) == [PONG]:
                return client
        except OSError:
            pass
        client.close()
        if time.monotonic() > deadline:
            raise TimeoutError("no free client slot")
        time.sleep(0.05)


def test_clients_per_listening_channel_are_bounded(tmp_path: Path) -> None:
    sock = tmp_path / "c" / "qga.sock"
    fake = FakeCapabilities()
    ctx = PollingContext(
        "transport",
        {
            "channels": [{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)}],
            "frontends": {"qga": "concierge.testing.qgafakes:FakeRoutedQgaFrontEnd"},
            "max_clients": 2,
        },
        peers=fake.peers(),
    )
    ctx.run_node(HostLinkNode)
    try:
        wait_for_socket(sock)  # its probe connection holds a slot until the transport reaps it
        with RawClient(sock) as first, _served_client(sock) as second:
            assert first.exchange(PING) == [PONG] and second.exchange(PING) == [PONG]
            refused_before = ctx.counters["host.clients_refused"]
            third = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            third.settimeout(5)
            third.connect(str(sock))
            assert third.recv(100) == b""  # closed at accept: over the limit
            third.close()
            assert ctx.counters["host.clients_refused"] == refused_before + 1
            assert first.exchange(PING) == [PONG] and second.exchange(PING) == [PONG]  # never noticed
        with _served_client(sock) as again:  # freed slots are usable again
            assert again.exchange(PING) == [PONG]
    finally:
        ctx.close()
