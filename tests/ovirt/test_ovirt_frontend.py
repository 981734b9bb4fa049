"""The oVirt front-end driven by a vdsm-faithful host over a pty pair and a unix socket."""

from __future__ import annotations

import logging
import os
import pty
import socket
import tempfile
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest
from ovirt_harness import FakePeers, HostPump, start_frontend

from concierge.testing.vdsm_host import VdsmHost


def _pty(closers: list[Callable[[], object]]) -> tuple[int, int]:
    host_fd, guest_fd = pty.openpty()
    tty.setraw(host_fd)
    tty.setraw(guest_fd)
    closers.append(lambda: (os.close(host_fd), os.close(guest_fd)))
    return host_fd, guest_fd


def test_full_session_over_pty(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    pump.send("refresh", apiVersion=3)  # vdsm's refresh, queued before the agent opens the port
    ctx = start_frontend(peers, fd=guest_fd)
    closers.append(ctx.close)
    # first heartbeat says 0, later 3: vdsm negotiates up and the v2/v3 reports follow
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_timezone))
    pump.wait(lambda h: bool(h.state.guest_os_info) and h.state.cpu_count == 4)
    heartbeats = [a for n, a in pump.host.received if n == "heartbeat"]
    assert heartbeats[0]["apiVersion"] == 0
    assert heartbeats[-1]["apiVersion"] == 3
    st = pump.host.state
    assert st.mem_usage == (4 * 1024 + 1024 + 1)  # free+cached+buffers in MiB
    assert st.memory_stats["mem_total"] == str(8 * 1024 * 1024)
    assert st.guest_name == "web01"
    assert st.fqdn == "web01.example.com"
    assert st.guest_os == "6.1.0-18-amd64"
    assert st.guest_os_info["arch"] == "x86_64"
    assert st.guest_timezone == {"zone": "Europe/Prague", "offset": 60}
    assert st.net_ifaces == [
        {"name": "eth0", "hw": "52:54:00:12:34:56", "inet": ["192.168.1.10"], "inet6": ["fe80::1"]}
    ]
    assert st.apps == ("kernel-6.1", "concierge-0.1\ufffd")  # XML-illegal BEL filtered by the guest
    assert st.disks_usage == [{"path": "/", "fs": "ext4", "total": "5000", "used": "1000"}]
    assert st.username == "alice"
    assert pump.host.exceptions == [] and pump.host.errors == []
    assert pump.host.is_responsive()
    # the raw wire is pure ASCII, one object per line
    assert all(b < 0x80 for b in pump.raw)
    assert pump.raw.endswith(b"\n")


def test_lifecycle_completion_and_commands(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=0.0)
    closers.append(ctx.close)
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_os_info))
    pump.send("lifecycle-event", type="before_migration", reply_id="r-1")
    pump.wait(lambda h: h.state.completions.get("r-1") is True)
    pump.send("shutdown", timeout=30, message="bye", reboot="True")
    pump.send("hibernate", state="mem")
    pump.send("set-number-of-cpus", count=2)
    pump.send("echo", ping="pong")
    pump.wait(lambda h: any(n == "echo" for n, _ in h.received))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not peers.of("lifecycle", "lifecycle.set_cpus"):
        time.sleep(0.02)
    assert peers.of("lifecycle", "lifecycle.guest_event") == [{"type": "before_migration", "failure": False}]
    assert peers.of("lifecycle", "lifecycle.shutdown") == [{"mode": "reboot", "delay_s": 30, "message": "bye"}]
    assert peers.of("lifecycle", "lifecycle.suspend") == [{"mode": "ram"}]
    assert peers.of("lifecycle", "lifecycle.set_cpus") == [{"count": 2}]
    assert [a for n, a in pump.host.received if n == "echo"] == [{"ping": "pong"}]


def test_garbage_and_oversize_lines_resync(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=0.0)
    closers.append(ctx.close)
    pump.wait(lambda h: bool(h.state.guest_name))
    os.write(host_fd, b'\xff\xfe not json\n[1,2]\n{"no_name": 1}\n' + b"x" * (1024 * 1024 + 10) + b"}\n")
    pump.send("echo", n=1)
    pump.wait(lambda h: any(n == "echo" for n, _ in h.received))
    assert ctx.counters["ovirt.garbage"] == 4
    # half a line left by vdsm's non-blocking sendall, then the next line: only that pair is lost
    os.write(host_fd, b'{"__name__": "ech')
    os.write(host_fd, b'{"__name__": "echo", "n": 2}\n')
    pump.send("echo", n=3)
    pump.wait(lambda h: [a for n, a in h.received if n == "echo"][-1] == {"n": 3})
    assert ctx.counters["ovirt.garbage"] == 5


def test_session_events_reach_host(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd)
    closers.append(ctx.close)
    pump.wait(lambda h: h.state.username == "alice")
    ctx.tell("session.lock", {"session": "c1", "user": "alice", "active": True}, kind="evt")
    pump.wait(lambda h: h.state.session == "Locked")
    peers.user = {"name": "alice", "locked": False}
    ctx.tell("session.unlock", {"session": "c1", "user": "alice", "active": True}, kind="evt")
    pump.wait(lambda h: h.state.session == "Active")
    peers.user = {"name": None, "locked": None}  # the poll notices the logoff on its own
    pump.wait(lambda h: h.state.username == "None" and h.state.session == "LoggedOff")


def test_stale_login_ignored_fresh_login_forwarded(
    peers: FakePeers, closers: list[Callable[[], object]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    pump.send("login", username="alice", password="st4le-pa55")  # queued while the port was closed
    pump.send("shutdown", timeout=0, reboot="False")
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=3.0)
    closers.append(ctx.close)
    pump.wait(lambda h: bool(h.state.guest_name))
    time.sleep(3.1)
    pump.send("login", username="alice@internal-authz", password="fr3sh-pa55")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not peers.of("sso", "sso.login"):
        time.sleep(0.02)
    assert peers.of("sso", "sso.login") == [{"username": "alice@internal-authz", "password": "fr3sh-pa55"}]
    assert peers.of("lifecycle", "lifecycle.shutdown") == []
    assert ctx.counters["ovirt.stale_dropped"] == 2
    assert "pa55" not in caplog.text


def test_unix_socket_disconnect_reconnect_repushes(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ovirt-sock-"))
    path = str(tmp / "ovirt-guest-agent.0")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    closers.append(lambda: (listener.close(), os.unlink(path), tmp.rmdir()))
    ctx = start_frontend(peers, listen_fd=listener.fileno())
    closers.append(ctx.close)
    for _round in range(2):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        host = VdsmHost(api_version=3)  # vdsm kept version 3 in the VM metadata
        pump = HostPump(conn.fileno(), host)
        host.on_connect()
        pump.flush()
        pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_os_info))
        # os-info is gated at v2 and the front-end forgets the version on disconnect: seeing it
        # again means the 0-then-3 heartbeat dip made vdsm re-send api-version
        assert host.state.guest_name == "web01"
        assert host.exceptions == []
        pump.close()
        conn.close()
        time.sleep(0.2)
    # host.connected / host.disconnected are published once, by the transport actor's channel
    # (tests/qga), never a second time by the front-end
    assert not [topic for topic, _ in ctx.published if topic.startswith("host.")]


def test_agent_restart_pushes_full_state_without_refresh(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_sock, guest_sock = socket.socketpair()
    closers.append(lambda: (host_sock.close(), guest_sock.close()))
    pump = HostPump(host_sock.fileno())
    closers.append(pump.close)
    first = start_frontend(peers, fd=guest_sock.fileno())
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_timezone))
    first.close()
    with pump.lock:
        pump.host.received.clear()
        pump.host.state.guest_timezone = {}
        sent_before = len(pump.host.outbox)
    assert sent_before == 0
    second = start_frontend(peers, fd=guest_sock.fileno())  # the agent restarted; vdsm never knew
    closers.append(second.close)
    pump.wait(lambda h: h.state.guest_name == "web01" and bool(h.state.guest_timezone), timeout=10)
    names = pump.names()
    assert "session-startup" in names and "refresh" not in names
    heartbeats = [a["apiVersion"] for n, a in pump.host.received if n == "heartbeat"]
    assert heartbeats[:2] == [0, 3]  # the dip forces vdsm to re-send api-version
