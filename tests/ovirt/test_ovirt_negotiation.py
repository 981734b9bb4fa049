"""Version gating, stale lifecycle events, slow collectors, and lock-screen through real logind."""

from __future__ import annotations

import os
import pty
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovirt_harness import FakePeers, HostPump, LogindMock, start_frontend

from concierge.actors.sso.node import SsoNode
from concierge.testing.context import FakeContext
from concierge.testing.fd_link import FrontEndHostNode
from concierge.testing.polling_context import PollingFakeContext


def _pty(closers: list[Callable[[], object]]) -> tuple[int, int]:
    host_fd, guest_fd = pty.openpty()
    tty.setraw(host_fd)
    tty.setraw(guest_fd)
    closers.append(lambda: (os.close(host_fd), os.close(guest_fd)))
    return host_fd, guest_fd


def test_old_vdsm_without_api_version_gets_v0_messages_only(
    peers: FakePeers, closers: list[Callable[[], object]]
) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=0.0)
    closers.append(ctx.close)
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_os_info))
    pump.send("refresh")  # an old vdsm: no apiVersion -> the agent falls back to 0
    pump.wait(lambda h: [n for n, _ in h.received].count("session-startup") >= 3)
    time.sleep(0.3)
    with pump.lock:
        pump.host.received.clear()
    pump.send("lifecycle-event", type="before_hibernation", reply_id="r-old")
    pump.send("echo")
    pump.wait(lambda h: any(n == "echo" for n, _ in h.received))
    time.sleep(0.3)
    names = pump.names()
    assert "completion" not in names and "os-info" not in names and "timezone" not in names


def test_stale_before_event_answered_without_hooks(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    pump.send("lifecycle-event", type="before_migration", reply_id="stale-1")
    pump.send("lock-screen")
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=30.0)
    closers.append(ctx.close)
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_os_info))
    pump.send("lifecycle-event", type="before_migration", reply_id="stale-2")  # still in the window
    pump.wait(lambda h: "stale-2" in h.state.completions)
    assert peers.of("lifecycle", "lifecycle.guest_event") == []
    assert peers.of("sso", "sso.lock") == [{}]  # locking is always honoured


def test_slow_monitor_never_delays_heartbeats(closers: list[Callable[[], object]]) -> None:
    peers = FakePeers()
    fast_monitor = peers.monitor

    def slow_monitor(type_: str, body: Any) -> Any:
        if type_ == "monitor.memory" and len(peers.of("monitor", "monitor.memory")) > 1:
            time.sleep(2.0)
        return fast_monitor(type_, body)

    peers.monitor = slow_monitor  # type: ignore[method-assign]
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd)
    closers.append(ctx.close)
    pump.wait(lambda h: h.state.mem_usage > 0)
    start = len([n for n in pump.names() if n == "heartbeat"])
    time.sleep(1.5)
    # 0.2 s period: ~7 expected in 1.5 s; a cadence twice as slow gives at most 4
    assert len([n for n in pump.names() if n == "heartbeat"]) - start >= 5
    assert pump.host.state.mem_usage > 0  # the last good sample is reused, never a bogus 0


def test_lock_screen_and_log_off_through_real_logind(
    system_bus: str, logind: LogindMock, tmp_path: Path, closers: list[Callable[[], object]]
) -> None:
    from jeepney import MatchRule, message_bus
    from jeepney.io.threading import DBusRouter, open_dbus_connection

    logind.add_session("c1", 1000, "alice")
    sso = PollingFakeContext("sso", {"system_bus": system_bus, "graceful_logoff": []}, runtime_dir=tmp_path)
    closers.append(sso.close)
    sso.run_node(SsoNode)
    # a screen locker: on logind's Lock signal it locks and sets LockedHint, as GNOME Shell does
    conn = open_dbus_connection(system_bus)
    router = DBusRouter(conn)
    closers.append(lambda: (router.close(), conn.close()))
    rule = MatchRule(type="signal", interface="org.freedesktop.login1.Session", member="Lock")
    handle = router.filter(rule, bufsize=10)
    router.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)

    def locker() -> None:
        try:
            handle.queue.get(timeout=20)
        except Exception:  # the test failed elsewhere; nothing to lock
            return
        logind.set_locked("c1", True)

    threading.Thread(target=locker, daemon=True).start()
    host_fd, guest_fd = _pty(closers)
    pump = HostPump(host_fd)
    closers.append(pump.close)
    peers = FakePeers()
    fe = FakeContext(
        "transport",
        {
            "frontend": "concierge.transport.ovirt:OvirtFrontEnd",
            "fd": guest_fd,
            "stale_window_s": 0.0,
            "heartbeat_s": 0.5,
            "active_user_s": 0.2,
        },
        peers={"monitor": peers.monitor, "sso": sso, "lifecycle": peers.lifecycle},
    )
    closers.append(fe.close)
    fe.run_node(FrontEndHostNode)
    pump.wait(lambda h: h.state.username == "alice")
    pump.send("lock-screen")
    pump.wait(lambda h: h.state.session == "Locked")  # vdsm's hibernation wait ends at once
    pump.send("log-off")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not logind.calls("/org/freedesktop/login1", "TerminateSession"):
        time.sleep(0.05)
    calls = logind.calls("/org/freedesktop/login1", "TerminateSession")
    assert [[v[1] for v in c[1]] for c in calls] == [["c1"]]
    logind.remove_session("c1")  # logind removes the terminated session
    pump.wait(lambda h: h.state.username == "None" and h.state.session == "LoggedOff")
