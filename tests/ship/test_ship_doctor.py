"""``concierge doctor`` against real peers: qemu-ga holding a port, dbusmock logind, Xvfb."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from concierge.supervisor.doctor import exit_code, render_table, run_doctor
from concierge.supervisor.doctor_checks import (
    FAIL,
    OK,
    WARN,
    HostView,
    probe_displays,
    probe_logind,
    probe_policy,
    probe_ports,
    probe_stock_agents,
    probe_uinput,
)
from concierge.testing.peers import require, require_binary

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><keep_umask/><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_type="method_call"/>
<allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy></busconfig>
"""


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fake_sys(tmp_path: Path, ports: dict[str, str]) -> HostView:
    """A /sys/class/virtio-ports tree and a /dev with vportNpM nodes (symlinks to real ttys)."""
    sysroot, devroot = tmp_path / "sys", tmp_path / "dev"
    for vport, (name, target) in enumerate(ports.items()):
        node = sysroot / "class" / "virtio-ports" / f"vport1p{vport + 1}"
        node.mkdir(parents=True)
        (node / "name").write_text(name + "\n")
        devroot.mkdir(exist_ok=True)
        node_target = target
        if not node_target:  # a node nobody has open
            node_target = str(tmp_path / f"free{vport}")
            Path(node_target).write_bytes(b"")
        (devroot / f"vport1p{vport + 1}").symlink_to(node_target)
    (sysroot / "class" / "virtio-ports").mkdir(parents=True, exist_ok=True)
    return HostView(sys_root=sysroot, dev_root=devroot, systemctl=None)


@pytest.fixture
def qemu_ga_on_pty(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The stock qemu-ga serving a pty as if it were its port."""
    qga = require_binary("qemu-ga", "qemu-guest-agent")
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    state = tmp_path / "qga-state"
    state.mkdir()
    proc = subprocess.Popen(
        [
            qga,
            "-m",
            "isa-serial",
            "-p",
            path,
            "-t",
            str(state),
            "-f",
            str(tmp_path / "qga.pid"),
            "-l",
            str(tmp_path / "qga.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield path, proc
    finally:
        stop(proc)
        os.close(master)


def test_ship_doctor_reports_port_held_by_stock_qemu_ga(
    tmp_path: Path, qemu_ga_on_pty: tuple[str, subprocess.Popen[bytes]]
) -> None:
    tty, proc = qemu_ga_on_pty
    view = fake_sys(tmp_path, {"org.qemu.guest_agent.0": tty, "com.redhat.spice.0": ""})

    def held() -> bool:
        return any(f.status == FAIL for f in probe_ports(view))

    assert wait_for(held), "qemu-ga never opened its port"
    findings = {f.name: f for f in probe_ports(view)}
    qga = findings["org.qemu.guest_agent.0"]
    assert qga.status == FAIL
    assert f"pid {proc.pid}" in qga.detail and "qemu-ga" in qga.detail
    assert findings["ovirt-guest-agent.0"].data["present"] is False
    agents = {f.name: f for f in probe_stock_agents(view)}
    assert agents["qemu-ga"].status == FAIL
    assert proc.pid in agents["qemu-ga"].data["pids"]


def test_ship_doctor_ports_free_and_absent(tmp_path: Path) -> None:
    view = fake_sys(tmp_path, {"ovirt-guest-agent.0": "", "org.example.other": ""})
    findings = {f.name: f for f in probe_ports(view)}
    assert findings["ovirt-guest-agent.0"].status == OK
    assert findings["org.qemu.guest_agent.0"].data["present"] is False
    assert "org.example.other" in findings
    assert "com.redhat.rhevm.vdsm" not in findings  # the legacy name is only shown when present


def test_ship_doctor_uinput(tmp_path: Path) -> None:
    view = HostView(dev_root=tmp_path, systemctl=None)
    assert [f.status for f in probe_uinput(view)] == [WARN]
    (tmp_path / "uinput").write_bytes(b"")
    assert [f.status for f in probe_uinput(view)] == [OK]


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    daemon = require_binary("dbus-daemon", "dbus")
    require(
        shutil.which("python3") is not None and Path("/usr/lib/python3/dist-packages/dbusmock").exists(),
        "python3-dbusmock not installed",
    )
    sock = tmp_path / "system_bus_socket"
    conf = tmp_path / "system.conf"
    conf.write_text(BUS_CONF.format(sock=sock))
    bus = subprocess.Popen(
        [daemon, f"--config-file={conf}", "--nofork"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(sock.exists)
        address = f"unix:path={sock}"
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address
    finally:
        stop(bus)


def test_ship_doctor_logind_via_dbusmock(system_bus: str) -> None:
    view = HostView(systemctl=None)
    # Bus up but no logind yet: a clear warning, not a hang.
    assert [f.status for f in probe_logind(view)] == [WARN]
    mock = subprocess.Popen(
        ["/usr/bin/python3", "-m", "dbusmock", "--template", "logind"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": system_bus},
    )
    try:
        assert wait_for(lambda: [f.status for f in probe_logind(view)] == [OK], timeout=20)
        mock_api = DBusAddress(
            "/org/freedesktop/login1", bus_name="org.freedesktop.login1", interface="org.freedesktop.DBus.Mock"
        )
        with open_dbus_connection(bus="SYSTEM") as conn:
            conn.send_and_get_reply(
                new_method_call(mock_api, "AddSession", "ssusb", ("c1", "seat0", 1000, "alice", True)), timeout=5
            )
        (finding,) = probe_logind(view)
        assert finding.status == OK
        assert finding.data["sessions"] == 1 and finding.data["users"] == ["alice"]
    finally:
        stop(mock)


def test_ship_doctor_no_system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing")
    (finding,) = probe_logind(HostView(systemctl=None))
    assert finding.status == WARN and "no system D-Bus" in finding.detail


def test_ship_doctor_finds_real_xvfb(tmp_path: Path) -> None:
    xvfb = require_binary("Xvfb", "xvfb")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            display = pipe.readline().strip()
        assert display.isdigit()
        (finding,) = probe_displays(HostView(run_user=tmp_path, systemctl=None))
        assert finding.status == OK
        assert f":{display}" in finding.data["displays"]
    finally:
        stop(proc)
    (finding,) = probe_displays(HostView(x11_dir=tmp_path, run_user=tmp_path, systemctl=None))
    assert finding.data["displays"] == []


def test_ship_doctor_policy() -> None:
    config = {
        "actors": {
            "input": {"entry": "x:Y", "enabled": False},
            "sso": {"entry": ""},
            "transport": {
                "settings": {"block_rpcs": ["guest-exec", "guest-file-open"], "allow_users": ["alice"], "port": "x"}
            },
        }
    }
    findings = {f.name: f for f in probe_policy(config)}
    assert findings["actors"].data["disabled"] == ["input", "sso"]
    assert findings["transport.block_rpcs"].data["blocked"] == ["guest-exec", "guest-file-open"]
    assert findings["transport.allow_users"].data["allowed"] == ["alice"]
    assert "transport.port" not in findings
    assert [f.status for f in probe_policy({"actors": []})] == [FAIL]


def test_ship_doctor_json_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing")
    view = fake_sys(tmp_path, {"org.qemu.guest_agent.0": ""})
    out = io.StringIO()
    code = run_doctor(as_json=True, config={"actors": {}}, view=view, out=out)
    doc = json.loads(out.getvalue())
    assert code in (1, 4)  # no logind here: at least a warning
    assert doc["status"] == {1: "warn", 4: "fail"}[code]
    areas = {f["area"] for f in doc["findings"]}
    assert {"ports", "stock-agents", "devices", "services", "policy"} <= areas
    qga = next(f for f in doc["findings"] if f["name"] == "org.qemu.guest_agent.0")
    assert qga["present"] is True and qga["protocol"] == "qga"
    out = io.StringIO()
    assert run_doctor(as_json=False, view=view, out=out) == code
    text = out.getvalue()
    assert text.splitlines()[0].split() == ["AREA", "CHECK", "STATUS", "DETAIL"]
    assert "\x1b[" not in text  # no colour when not a terminal
    assert "\x1b[31m" in render_table([*probe_policy({"actors": []})], colour=True)
    assert exit_code([]) == 0
