"""Component tests of MonitorNode against the real system: settings, bad input, excludes
and caps, change detection, applications vs dpkg-query, memory, logind fallback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from monitor_peers import add_logind_session, logind_mock, monitor_node

from concierge.actors.monitor.node import MonitorNode
from concierge.errors import ConfigError, ErrorCode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require, require_binary


def test_bad_settings_raise_config_error() -> None:
    ctx = FakeContext("monitor", {"interface_cap": "lots"})
    try:
        with pytest.raises(ConfigError, match=r"actors\.monitor\.settings"):
            ctx.run_node(MonitorNode)
        ctx2 = FakeContext("monitor", {"no_such_knob": 1})
        with pytest.raises(ConfigError, match=r"no_such_knob"):
            ctx2.run_node(MonitorNode)
        ctx2.close()
    finally:
        ctx.close()


def test_bad_bodies_get_bad_request_and_the_node_keeps_answering() -> None:
    with monitor_node() as ctx:
        for kind, body in [
            ("monitor.interfaces", {"profile": "nope"}),
            ("monitor.interfaces", [1, 2]),
            ("monitor.filesystems", {"scope": 3}),
            ("monitor.applications", {"names": "kernel"}),
        ]:
            reply = ctx.ask(kind, body)
            assert not reply.ok and reply.code == ErrorCode.BAD_REQUEST, (kind, reply)
        assert ctx.ask("monitor.nope").code == ErrorCode.UNKNOWN_TYPE
        assert ctx.ask("monitor.cpus").body == {"count": os.cpu_count()}


def test_interfaces_excludes_and_cap_are_reported() -> None:
    names = [name for _, name in socket.if_nameindex()]
    with monitor_node({"interface_excludes": ["lo"], "interface_cap": 1, "qga_interface_excludes": []}) as ctx:
        default = ctx.ask("monitor.interfaces").body
        qga = ctx.ask("monitor.interfaces", {"profile": "qga"}).body
    assert [i["name"] for i in qga["interfaces"]] == names
    assert qga["excluded"] == 0 and qga["truncated"] is False
    assert default["excluded"] == 1
    assert [i["name"] for i in default["interfaces"]] == [n for n in names if n != "lo"][:1]
    assert default["truncated"] is (len(names) > 2)


def test_default_excludes_hide_container_interfaces_only() -> None:
    with monitor_node({"interface_excludes": ["veth*", "docker*"]}) as ctx:
        body = ctx.ask("monitor.interfaces").body
    listed = {i["name"] for i in body["interfaces"]}
    assert not any(n.startswith(("veth", "docker")) for n in listed)
    assert body["excluded"] == sum(1 for _, n in socket.if_nameindex() if n.startswith(("veth", "docker")))


_NETNS_SCRIPT = """
import json, subprocess, sys
from concierge.testing.context import FakeContext
from concierge.actors.monitor.node import MonitorNode
ctx = FakeContext("monitor", {})
ctx.run_node(MonitorNode)
def lo():
    body = ctx.ask("monitor.interfaces", {"profile": "qga"}).body
    return [i for i in body["interfaces"] if i["name"] == "lo"][0]["addresses"]
first, again = lo(), lo()
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
after = lo()
node = ctx.node
ctx.close()
print(json.dumps({"first": first, "again": again, "after": after,
                  "rebuilds": node.interfaces.rebuilds}))
"""


def test_address_change_is_visible_at_the_next_request(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    require(unshare is not None and os.geteuid() == 0, "needs root and unshare")
    require_binary("ip", "iproute2")
    assert unshare is not None
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [unshare, "-n", sys.executable, "-c", _NETNS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(src)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["first"] == [] and result["again"] == []
    assert {"family": "ipv4", "address": "127.0.0.1", "prefix": 8} in result["after"]
    assert result["rebuilds"] == 2  # the unchanged second request reused the cache


def test_applications_match_dpkg_query() -> None:
    dpkg_query = require_binary("dpkg-query", "dpkg")
    out = subprocess.run(
        [dpkg_query, "-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = {
        f"{name}-{version}"
        for name, version, status in (line.split("\t") for line in out.splitlines())
        if status not in ("not-installed", "config-files")
    }
    with monitor_node({"application_names": ["*"]}) as ctx:
        started = time.monotonic()
        first = ctx.ask("monitor.applications").body["applications"]
        cold = time.monotonic() - started
        second = ctx.ask("monitor.applications").body["applications"]
        node = ctx.node
    assert isinstance(node, MonitorNode)
    assert expected
    assert expected <= set(first)  # plus virtual names from Provides
    assert first == second
    assert node.applications.reads == 1  # unchanged database: not read again
    assert cold < 30


def test_applications_default_patterns_and_virtual_names(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text(
        "Package: linux-image-6.1.0-9-amd64\nStatus: install ok installed\nVersion: 6.1.27-1\n"
        "Provides: linux-image, wireguard-modules (= 1.0.0)\n\n"
        "Package: cloud-init\nStatus: install ok installed\nVersion: 22.4.2-1\n\n"
        "Package: kernel-old\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: vim\nStatus: install ok installed\nVersion: 2:9.0\n"
    )
    with monitor_node({"dpkg_status_path": str(status)}) as ctx:
        apps = ctx.ask("monitor.applications").body["applications"]
        status.write_text(
            status.read_text() + "\nPackage: xserver-xorg-video-qxl\nStatus: install ok installed\nVersion: 0.1.5\n"
        )
        later = ctx.ask("monitor.applications").body["applications"]
        custom = ctx.ask("monitor.applications", {"names": ["vim"]}).body["applications"]
    assert apps == ["cloud-init-22.4.2-1", "linux-image-6.1.27-1"]
    assert "xserver-xorg-video-qxl-0.1.5" in later  # a change is visible at the next request
    assert custom == ["vim-2:9.0"]


def test_memory_matches_proc_meminfo() -> None:
    with monitor_node() as ctx:
        body = ctx.ask("monitor.memory").body
    vm = psutil.virtual_memory()
    assert body["total"] == vm.total
    assert set(body) == {
        "total",
        "free",
        "available",
        "cached",
        "buffers",
        "swap_total",
        "swap_free",
        "swap_in",
        "swap_out",
        "pageflt",
        "majflt",
    }
    assert 0 < body["free"] <= body["total"]
    assert body["pageflt"] > 0


def test_identity_time_and_load() -> None:
    with monitor_node() as ctx:
        host = ctx.ask("monitor.hostname").body
        zone = ctx.ask("monitor.timezone").body
        load = ctx.ask("monitor.load").body
        routes = ctx.ask("monitor.routes").body
    assert host["hostname"] == socket.gethostname()
    assert host["fqdn"]
    assert zone["offset"] == time.localtime().tm_gmtoff
    assert isinstance(zone["iana"], str)
    assert set(load) == {"load1m", "load5m", "load15m"}
    for route in routes:
        assert route["version"] in (4, 6)
        assert route["iface"] in {n for _, n in socket.if_nameindex()} | {"lo"}


def test_os_release_edited_on_disk_is_reported_at_the_next_request(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=one\nPRETTY_NAME="First One"\n')
    with monitor_node({"os_release_paths": [str(release)]}) as ctx:
        first = ctx.ask("monitor.osinfo").body
        assert ctx.ask("monitor.osinfo").body == first  # served from the parsed copy
        release.write_text('ID=two\nPRETTY_NAME="Second, longer"\nVERSION_ID=2\n')
        second = ctx.ask("monitor.osinfo").body
        release.unlink()
        gone = ctx.ask("monitor.osinfo").body
    assert (first["id"], first["pretty-name"]) == ("one", "First One")
    assert (second["id"], second["pretty-name"], second["version-id"]) == ("two", "Second, longer", "2")
    assert "id" not in gone and gone["kernel-release"] == os.uname().release


def test_logind_used_when_utmp_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "utmp"
    empty.write_bytes(b"")
    with logind_mock(tmp_path) as (address, _mock):
        add_logind_session(address, "c1", 1000, "dora")
        add_logind_session(address, "c2", 1000, "dora")
        settings = {"utmp_path": str(empty), "logind_bus": address}
        with monitor_node(settings) as ctx:
            users = ctx.ask("monitor.users").body
    assert users == [{"user": "dora", "login_time": 42e-6, "source": "logind"}]


def test_no_utmp_and_no_logind_is_an_empty_list(tmp_path: Path) -> None:
    settings = {"utmp_path": str(tmp_path / "none"), "logind_bus": f"unix:path={tmp_path}/x"}
    with monitor_node(settings) as ctx:
        reply = ctx.ask("monitor.users")
    assert reply.ok and reply.body == []


def _rpm_header(name: str, version: str, release: str) -> bytes:
    """An rpm header blob as rpmdb.sqlite stores it (index entries + data store)."""
    store = b""
    index = b""
    for tag, value in ((1000, name), (1001, version), (1002, release)):
        index += struct.pack(">iiii", tag, 6, len(store), 1)
        store += value.encode() + b"\0"
    return struct.pack(">ii", 3, len(store)) + index + store


def test_rpm_sqlite_database_is_read_without_rpm(tmp_path: Path) -> None:
    rpmdir = tmp_path / "rpm"
    rpmdir.mkdir()
    conn = sqlite3.connect(rpmdir / "rpmdb.sqlite")
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    conn.execute("INSERT INTO Packages (blob) VALUES (?)", (_rpm_header("kernel", "5.14.0", "362.el9"),))
    conn.execute("INSERT INTO Packages (blob) VALUES (?)", (_rpm_header("bash", "5.1.8", "6.el9"),))
    conn.commit()
    conn.close()
    settings = {"rpmdb_dir": str(rpmdir), "dpkg_status_path": str(tmp_path / "none")}
    with monitor_node(settings) as ctx:
        apps = ctx.ask("monitor.applications").body["applications"]
    assert apps == ["kernel-5.14.0-362.el9"]
