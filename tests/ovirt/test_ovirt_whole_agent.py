"""The oVirt front-end inside the whole agent, fed by the real monitor, lifecycle and sso actors.

The supervisor runs transport, monitor, lifecycle and sso in their own processes; the sso actor
talks to a private system bus with the logind mock. A vdsm-faithful host connects to the oVirt
channel (unix-listen) and every guest->host report type is checked against this machine's own
values (/proc/meminfo, uname, hostname, CPU count, /etc/os-release), not against fakes.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ovirt_harness import HostPump, LogindMock

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import wait_for_socket

FAST = {
    "heartbeat_s": 0.5,
    "active_user_s": 0.5,
    "number_of_cpus_s": 5.0,
    "inventory_s": 30.0,
    "disks_usage_s": 30.0,
    "stale_window_s": 0.0,
}


@pytest.fixture
def agent(
    tmp_path: Path, system_bus: str, logind: LogindMock, closers: list[Callable[[], object]]
) -> Iterator[tuple[AgentHarness, HostPump]]:
    logind.add_session("c1", 1000, "alice")
    sock = tmp_path / "ovirt.sock"
    actors: dict[str, dict[str, Any]] = {
        "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
        "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
        "lifecycle": {
            "entry": "concierge.actors.lifecycle.node:LifecycleNode",
            "settings": {"only_mountpoints": ["/nonexistent-mount"], "state_dir": str(tmp_path / "lc")},
        },
        "sso": {
            "entry": "concierge.actors.sso.node:SsoNode",
            "settings": {"system_bus": system_bus, "graceful_logoff": [], "socket_dir": str(tmp_path / "sso")},
        },
    }
    extra = "[actors.transport.settings.protocol_settings.ovirt]\n" + "".join(
        f"{key} = {value}\n" for key, value in FAST.items()
    )
    (tmp_path / "agent").mkdir()
    harness = AgentHarness(
        tmp_path / "agent",
        catalog(actors, extra=extra),
        args=("--log-format", "text", "--channel", f"ovirt=unix-listen:{sock}"),
    )
    harness.start()
    closers.append(harness.stop)
    wait_for_socket(sock)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock))
    closers.append(conn.close)
    pump = HostPump(conn.fileno())
    closers.append(pump.close)
    yield harness, pump


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise KeyError(key)


def _os_release() -> dict[str, str]:
    out = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value.strip().strip('"')
    return out


def _last(pump: HostPump, name: str) -> dict[str, Any]:
    with pump.lock:
        return next(args for n, args in reversed(pump.host.received) if n == name)


def test_every_report_comes_from_the_real_actors(agent: tuple[AgentHarness, HostPump], logind: LogindMock) -> None:
    harness, pump = agent
    reports = (
        "heartbeat",
        "host-name",
        "fqdn",
        "os-version",
        "os-info",
        "timezone",
        "network-interfaces",
        "applications",
        "disks-usage",
        "number-of-cpus",
        "active-user",
    )
    pump.wait(lambda h: h.effective_api_version == 3, timeout=30)
    try:
        pump.wait(lambda h: all(r in {n for n, _ in h.received} for r in reports), timeout=60)
    except AssertionError:
        missing = set(reports) - set(pump.names())
        raise AssertionError(f"never reported: {sorted(missing)}\n{harness.log_tail(60)}") from None
    st = pump.host.state
    # heartbeat: the monitor's real /proc/meminfo, in KiB as vdsm reads it
    stats = _last(pump, "heartbeat")["memory-stat"]
    assert stats["mem_total"] == _meminfo_kib("MemTotal")
    assert 0 < int(_last(pump, "heartbeat")["free-ram"]) <= _meminfo_kib("MemTotal") // 1024
    assert st.guest_name == socket.gethostname()
    assert st.fqdn == socket.getfqdn()
    assert st.guest_os == platform.release()
    release = _os_release()
    assert st.guest_os_info["version"] == release.get("VERSION_ID", "")
    assert st.guest_os_info["kernel"] == platform.release()
    assert isinstance(st.guest_timezone["zone"], str) and isinstance(st.guest_timezone["offset"], int)
    local_names = {name for _, name in socket.if_nameindex()}
    assert st.net_ifaces and {i["name"] for i in st.net_ifaces} <= local_names
    assert st.cpu_count == os.cpu_count()
    assert isinstance(st.apps, tuple)
    assert st.disks_usage, "the root filesystem at least"
    assert all(int(d["used"]) <= int(d["total"]) for d in st.disks_usage)
    # active-user: the sso actor's answer from the logind mock's session
    pump.wait(lambda h: h.state.username == "alice", timeout=15)
    # session-lock / session-unlock: sso's logind events forwarded through the transport actor
    logind.set_locked("c1", True)
    pump.wait(lambda h: h.state.session == "Locked", timeout=15)
    logind.set_locked("c1", False)
    pump.wait(lambda h: h.state.session == "Active", timeout=15)
    # completion: a lifecycle event answered by the real lifecycle actor (no hooks installed)
    pump.send("lifecycle-event", type="before_migration", reply_id="mig-1")
    pump.wait(lambda h: h.state.completions.get("mig-1") is True, timeout=15)
    assert pump.host.errors == []
    actors = {a["id"]: a["state"] for a in harness.status()["actors"]}
    assert actors == dict.fromkeys(("transport", "monitor", "lifecycle", "sso"), "RUNNING")


def test_containers_report_comes_from_the_real_monitor(agent: tuple[AgentHarness, HostPump]) -> None:
    _, pump = agent
    pump.wait(lambda h: h.effective_api_version == 3 and "disks-usage" in {n for n, _ in h.received}, timeout=30)
    pump.wait(lambda h: "containers" in {n for n, _ in h.received}, timeout=10)
    assert isinstance(pump.host.state.containers, list)
