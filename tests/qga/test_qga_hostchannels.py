"""Host channels with real fds: a pty pair as a virtio port, isa-serial, unix sockets, vsock."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

from concierge.testing.peers import load_kernel_module, skip_allowed
from concierge.testing.ptyport import PtyPort
from concierge.testing.qga_inproc import Agent, start_agent
from concierge.testing.qga_peer import RawClient, wait_for_socket
from concierge.transport.host.spec import default_channels, parse_channel

PING = b'{"execute":"guest-ping"}'
PONG = b'{"return": {}}\n'


def _port_agent(tmp_path: Path, method: str = "virtio-serial") -> tuple[PtyPort, Agent]:
    port = PtyPort(tmp_path / "virtio-ports" / "org.qemu.guest_agent.0")
    running = start_agent(
        tmp_path,
        channels=[{"name": "qga", "protocol": "qga", "method": method, "path": str(port.path)}],
    )
    return port, running


def test_pty_port_open_disconnect_reconnect_unplug(tmp_path: Path) -> None:
    port, running = _port_agent(tmp_path)
    try:
        running.wait_published("host.connected")
        port.write(PING)
        assert port.read_line() == PONG
        port.write(b'{"execute":"guest-sync-delimited","arguments":{"id":5}}')
        assert port.read_line() == b'\xff{"return": 5}\n'

        port.close_host()  # no host process on the port any more
        running.wait_published("host.disconnected")
        calls = running.ctx.fd_callbacks
        time.sleep(1.0)
        assert running.ctx.fd_callbacks - calls < 20  # no busy loop on a hung-up port

        port.reconnect()  # the port comes back behind the same path
        running.wait_published("host.connected", 2)
        port.write(b'{"execute":"guest-ping","id":2}')
        assert port.read_line() == b'{"return": {}, "id": 2}\n'

        port.unplug()  # hot-unplug: the device node disappears
        running.wait_published("host.disconnected", 2)
        time.sleep(0.3)
        port.reconnect()
        running.wait_published("host.connected", 3)
        port.write(PING)
        assert port.read_line() == PONG
        assert running.ctx.health[0] == "ok"
        assert "qga=attached" in running.ctx.health[1]
    finally:
        running.ctx.close()
        port.close()


def test_partial_request_before_disconnect_is_forgotten(tmp_path: Path) -> None:
    port, running = _port_agent(tmp_path)
    try:
        running.wait_published("host.connected")
        port.write(b'{"execute":"guest-get-time",')
        time.sleep(0.2)
        port.close_host()
        running.wait_published("host.disconnected")
        port.reconnect()
        running.wait_published("host.connected", 2)
        port.write(PING)
        assert port.read_line() == PONG
    finally:
        running.ctx.close()
        port.close()


def test_output_buffered_for_a_host_that_left_is_dropped(tmp_path: Path) -> None:
    port, running = _port_agent(tmp_path)
    try:
        running.wait_published("host.connected")
        # a reply far larger than the pty buffer, never read: most of it waits in our buffer
        port.write(b'{"execute":"guest-ping","id":"' + b"q" * 500_000 + b'"}')
        deadline = time.monotonic() + 5
        while running.ctx.counters["host.rx_bytes"] < 500_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        port.close_host()
        running.wait_published("host.disconnected")
        port.reconnect()
        running.wait_published("host.connected", 2)
        port.write(b'{"execute":"guest-ping","id":"fresh"}')
        assert port.read_line() == b'{"return": {}, "id": "fresh"}\n'  # no tail of the old one
        assert running.ctx.counters["host.dropped_bytes"] > 0
    finally:
        running.ctx.close()
        port.close()


def test_missing_port_is_retried_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "virtio-ports" / "org.qemu.guest_agent.0"
    running = start_agent(
        tmp_path,
        channels=[{"name": "qga", "protocol": "qga", "method": "virtio-serial", "path": str(path)}],
    )
    try:
        time.sleep(0.3)
        assert running.ctx.counters["host.open_failures"] >= 1
        status = running.ctx.ask("transport.status").unwrap()
        assert status["channels"][0]["attached"] is False
        assert "FileNotFoundError" in status["channels"][0]["error"]
        with PtyPort(path) as port:
            running.wait_published("host.connected")
            port.write(PING)
            assert port.read_line() == PONG
    finally:
        running.ctx.close()


def test_isa_serial_on_a_pty(tmp_path: Path) -> None:
    import serial  # noqa: F401 - pyserial is a runtime dependency: never skipped

    port, running = _port_agent(tmp_path, "isa-serial")
    try:
        running.wait_published("host.connected")
        port.write(b'{"execute":"guest-sync","arguments":{"id":3}}')
        assert port.read_line() == b'{"return": 3}\n'
    finally:
        running.ctx.close()
        port.close()


def test_unix_connect_reconnects(tmp_path: Path) -> None:
    path = tmp_path / "host.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(5)
    running = start_agent(
        tmp_path,
        channels=[{"name": "qga", "protocol": "qga", "method": "unix-connect", "path": str(path)}],
    )
    try:
        for round_ in range(2):
            conn, _ = listener.accept()
            conn.settimeout(5)
            conn.sendall(PING)
            assert conn.recv(100) == PONG
            conn.close()
            running.wait_published("host.disconnected", round_ + 1)
    finally:
        running.ctx.close()
        listener.close()


def test_stale_socket_is_replaced_but_other_files_are_left_alone(tmp_path: Path) -> None:
    stale = tmp_path / "agent" / "qga.sock"
    stale.parent.mkdir()
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(stale))
    old.close()
    running = start_agent(tmp_path)
    try:
        with RawClient(running.socket_path) as client:
            assert client.exchange(PING) == [PONG]
    finally:
        running.ctx.close()
    assert not stale.exists()  # removed on stop

    precious = tmp_path / "precious"
    precious.write_text("keep me")
    blocked = start_agent(
        tmp_path,
        channels=[{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(precious)}],
    )
    try:
        time.sleep(0.3)
        status = blocked.ctx.ask("transport.status").unwrap()
        assert "Address already in use" in status["channels"][0]["error"]
        assert precious.read_text() == "keep me"
    finally:
        blocked.ctx.close()


def test_a_client_that_does_not_read_is_dropped_without_hurting_others(tmp_path: Path) -> None:
    from concierge.actors.hostlink.node import HostLinkNode
    from concierge.testing.pollctx import PollingContext
    from concierge.testing.qgafakes import FakeCapabilities

    sock = tmp_path / "c" / "qga.sock"
    fake = FakeCapabilities()
    ctx = PollingContext(
        "transport",
        {
            "channels": [{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)}],
            "frontends": {"qga": "concierge.testing.qgafakes:FakeRoutedQgaFrontEnd"},
            "max_output_bytes": 1 << 20,
        },
        peers=fake.peers(),
    )
    ctx.run_node(HostLinkNode)
    try:
        wait_for_socket(sock)
        hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        hog.connect(str(sock))
        request = b'{"execute":"guest-ping","id":"' + b"y" * 100_000 + b'"}'
        hog.settimeout(5)
        with RawClient(sock) as polite:
            for _ in range(40):  # 4 MB of replies the hog never reads
                try:
                    hog.sendall(request)
                except OSError:
                    break
            assert polite.exchange(PING) == [PONG]
        deadline = time.monotonic() + 5
        while ctx.counters["host.overflows"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctx.counters["host.overflows"] >= 1
        hog.close()
    finally:
        ctx.close()


def _vsock_error() -> str:
    """Why an AF_VSOCK socket cannot be bound here ("" when it can)."""
    try:
        probe = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        probe.bind((socket.VMADDR_CID_ANY, 0))
        probe.close()
    except (AttributeError, OSError) as err:
        return str(err) or type(err).__name__
    return ""


def test_vsock_listen_when_the_kernel_offers_it(tmp_path: Path) -> None:
    error = _vsock_error()
    if error and (load_kernel_module("vsock_loopback") or load_kernel_module("vhost_vsock")):
        error = _vsock_error()
    skip_allowed("vsock", not error, f"AF_VSOCK unavailable in this kernel: {error}")
    address = f"-1:{random.randint(20000, 60000)}"
    channel = {"name": "qga", "protocol": "qga", "method": "vsock-listen", "path": address}
    running = start_agent(tmp_path, channels=[channel])
    try:
        time.sleep(0.2)
        status = running.ctx.ask("transport.status").unwrap()
        assert status["channels"][0]["open"] is True
    finally:
        running.ctx.close()


def test_channels_work_with_zmq_style_poll_flags(tmp_path: Path) -> None:
    """A bridge passing select flags to a ZeroMQ poller: no POLLOUT, HUP reported as ERR."""
    running = start_agent(tmp_path / "sock", flag_style="zmq")
    port = PtyPort(tmp_path / "ports" / "org.qemu.guest_agent.0")
    channel = {"name": "qga", "protocol": "qga", "method": "virtio-serial", "path": str(port.path)}
    on_port = start_agent(tmp_path / "port", channels=[channel], flag_style="zmq")
    try:
        with RawClient(running.socket_path) as client:
            # far larger than the socket buffer: completed without POLLOUT ever being reported
            big = b"w" * (1 << 20)
            client.send(b'{"execute":"guest-ping","id":"' + big + b'"}')
            assert client.read_line() == b'{"return": {}, "id": "' + big + b'"}\n'
        on_port.wait_published("host.connected")
        port.write(PING)
        assert port.read_line() == PONG
        port.close_host()
        on_port.wait_published("host.disconnected")
        port.reconnect()
        on_port.wait_published("host.connected", 2)
        port.write(PING)
        assert port.read_line() == PONG
    finally:
        running.ctx.close()
        on_port.ctx.close()
        port.close()


def test_channel_specs_and_defaults(tmp_path: Path) -> None:
    assert parse_channel("qga=virtio-serial:/dev/virtio-ports/org.qemu.guest_agent.0") == {
        "name": "qga",
        "protocol": "qga",
        "method": "virtio-serial",
        "path": "/dev/virtio-ports/org.qemu.guest_agent.0",
    }
    assert parse_channel("qga=vsock-listen:3:1234")["path"] == "3:1234"
    assert parse_channel("extra=unix-listen:/run/x.sock", "qga")["protocol"] == "qga"
    for bad, error in (
        ("qga", r"^channel must look like NAME=METHOD:PATH, got 'qga'$"),
        ("qga=virtio-serial", r"^channel must look like NAME=METHOD:PATH"),
        ("qga=carrier-pigeon:/x", r"^unknown channel method 'carrier-pigeon'"),
        ("extra=unix-listen:/x", r"^channel 'extra' needs a protocol"),
    ):
        with pytest.raises(ValueError, match=error):
            parse_channel(bad)

    dev = tmp_path / "dev"
    dev.mkdir()
    run = tmp_path / "run"
    assert [c["method"] for c in default_channels(run, dev)] == ["unix-listen"] * 3
    assert default_channels(run, dev)[0]["path"] == str(run / "channels" / "qga.sock")
    for name in (
        "org.qemu.guest_agent.0",
        "ovirt-guest-agent.0",
        "com.redhat.rhevm.vdsm",
        "com.redhat.spice.0",
    ):
        (dev / name).touch()
    found = {c["protocol"]: c["path"] for c in default_channels(run, dev)}
    assert found == {
        "qga": str(dev / "org.qemu.guest_agent.0"),
        "ovirt": str(dev / "com.redhat.rhevm.vdsm"),
        "spice": str(dev / "com.redhat.spice.0"),
    }
    os.unlink(dev / "com.redhat.rhevm.vdsm")
    assert default_channels(run, dev)[1]["path"] == str(dev / "ovirt-guest-agent.0")


def test_missing_frontend_degrades_only_its_channels(tmp_path: Path) -> None:
    from concierge.actors.hostlink.node import HostLinkNode
    from concierge.testing.pollctx import PollingContext

    sock = tmp_path / "q.sock"
    ctx = PollingContext(
        "transport",
        {
            "channels": [
                {"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)},
                {
                    "name": "spice",
                    "protocol": "spice",
                    "method": "unix-listen",
                    "path": str(tmp_path / "s.sock"),
                },
            ],
            "frontends": {
                "qga": "concierge.transport.qga.frontend:QgaFrontEnd",
                "spice": "no.such.module:X",
            },
        },
    )
    ctx.run_node(HostLinkNode)
    try:
        wait_for_socket(sock)
        with RawClient(sock) as client:
            assert client.exchange(PING) == [PONG]
        assert ctx.health[0] == "degraded"
        assert "spice=failed" in ctx.health[1]
    finally:
        ctx.close()
