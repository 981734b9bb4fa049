"""Power and suspend: logind on a private dbus-daemon (python-dbusmock's logind template) with
the exact D-Bus calls asserted, and the no-systemd fallback with stand-in binaries on a PATH the
test controls. Nothing here can power off or suspend the machine running the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg
from lifecycle_support import make_script, wait_for

from concierge.actors.lifecycle import messages as m
from concierge.actors.lifecycle.node import LifecycleNode
from concierge.actors.lifecycle.power import UNSUPPORTED_SUSPEND
from concierge.errors import ErrorCode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require, require_binary

MOCK = DBusAddress(
    "/org/freedesktop/login1",
    bus_name="org.freedesktop.login1",
    interface="org.freedesktop.DBus.Mock",
)
MANAGER = "org.freedesktop.login1.Manager"


def _dbusmock_available() -> bool:
    return (
        subprocess.run(["/usr/bin/python3", "-c", "import dbusmock"], capture_output=True, check=False).returncode == 0
    )


class MockLogind:
    """A private bus with dbusmock's logind; records every call made to it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def _call(self, method: str, signature: str | None = None, *args: Any) -> Any:
        conn = open_dbus_connection(bus=self.address)
        try:
            msg = new_method_call(MOCK, method, signature, args or None)
            return unwrap_msg(conn.send_and_get_reply(msg, timeout=5))
        finally:
            conn.close()

    def add_method(self, name: str, in_sig: str) -> None:
        self._call("AddMethod", "sssss", MANAGER, name, in_sig, "", "")

    def calls(self) -> list[tuple[str, list[Any]]]:
        (raw,) = self._call("GetCalls")
        return [(name, [value for _sig, value in args]) for _ts, name, args in raw]

    def clear(self) -> None:
        self._call("ClearCalls")


@pytest.fixture
def logind(tmp_path: Path) -> Iterator[MockLogind]:
    daemon_bin = require_binary("dbus-daemon", "dbus")
    require(_dbusmock_available(), "python-dbusmock missing (apt install python3-dbusmock)")
    daemon = subprocess.Popen(
        [daemon_bin, "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        text=True,
    )
    mock: subprocess.Popen[bytes] | None = None
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
        mock = subprocess.Popen(
            [
                "/usr/bin/python3",
                "-m",
                "dbusmock",
                "--template",
                "logind",
                "-p",
                json.dumps({"CanHibernate": "no", "CanHybridSleep": "na"}),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proxy = MockLogind(address)

        def ready() -> bool:
            try:
                proxy.calls()
                return True
            except Exception:
                return False

        assert wait_for(ready, 15.0), "dbusmock logind did not come up"
        for name, sig in (("Halt", "b"), ("SetWallMessage", "sb"), ("ScheduleShutdown", "st")):
            proxy.add_method(name, sig)
        yield proxy
    finally:
        if mock is not None:
            mock.terminate()
            mock.wait(timeout=10)
        daemon.terminate()
        daemon.wait(timeout=10)


def _node(settings: dict[str, Any]) -> FakeContext:
    ctx = FakeContext(
        "lifecycle",
        {
            "fsfreeze_hook": "",
            "state_dir": tempfile.mkdtemp(),
            "only_mountpoints": ["/nonexistent-test-mount"],
            **settings,
        },
    )
    ctx.run_node(LifecycleNode)
    return ctx


@pytest.mark.peer
def test_logind_shutdown_calls(logind: MockLogind) -> None:
    ctx = _node({"power_backend": "logind", "dbus_address": logind.address})
    try:
        assert ctx.ask(m.SHUTDOWN, {"mode": "powerdown", "delay_s": 0, "message": "hypervisor initiated shutdown"}).ok
        assert logind.calls() == [
            ("SetWallMessage", ["hypervisor initiated shutdown", True]),
            ("PowerOff", [False]),
        ]
        logind.clear()
        assert ctx.ask(m.SHUTDOWN, {"mode": "halt", "message": ""}).ok
        assert ctx.ask(m.SHUTDOWN, {"mode": "reboot", "message": ""}).ok
        assert logind.calls() == [("Halt", [False]), ("Reboot", [False])]
        logind.clear()
        before_us = _now_us()
        assert ctx.ask(m.SHUTDOWN, {"mode": "reboot", "delay_s": 120, "message": "bye"}).ok
        (wall, (name, (kind, when_us))) = logind.calls()
        assert wall == ("SetWallMessage", ["bye", True])
        assert (name, kind) == ("ScheduleShutdown", "reboot")
        assert before_us + 120_000_000 <= when_us <= _now_us() + 120_000_000
        bad = ctx.ask(m.SHUTDOWN, {"mode": "explode"})
        assert not bad.ok and bad.code == ErrorCode.BAD_REQUEST
        assert bad.message == "mode is invalid (valid values are: halt|powerdown|reboot"
    finally:
        ctx.close()


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


@pytest.mark.peer
def test_logind_suspend_checks_support_first(logind: MockLogind) -> None:
    ctx = _node({"power_backend": "logind", "dbus_address": logind.address})
    try:
        assert ctx.ask(m.SUSPEND, {"mode": "ram"}).ok
        assert logind.calls() == [("CanSuspend", []), ("Suspend", [False])]
        logind.clear()
        for mode in ("disk", "hybrid"):
            reply = ctx.ask(m.SUSPEND, {"mode": mode})
            assert not reply.ok and reply.message == UNSUPPORTED_SUSPEND
        assert logind.calls() == [("CanHibernate", []), ("CanHybridSleep", [])]
    finally:
        ctx.close()


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    return bindir


def _recorder(bindir: Path, name: str, log: Path, status: int = 0) -> None:
    make_script(bindir / name, f'echo "{name} $*" >> {log}\nexit {status}\n')


def test_fallback_shutdown_uses_shutdown_binary(stand_ins: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    _recorder(stand_ins, "shutdown", log)
    ctx = _node({"power_backend": "binaries", "bin_path": str(stand_ins)})
    try:
        assert ctx.ask(m.SHUTDOWN, {"mode": "powerdown"}).ok
        assert ctx.ask(m.SHUTDOWN, {"mode": "halt", "delay_s": 90, "message": "maintenance"}).ok
        assert ctx.ask(m.SHUTDOWN, {"mode": "reboot"}).ok
        assert log.read_text().splitlines() == [
            "shutdown -h -P +0 hypervisor initiated shutdown",
            "shutdown -h -H +2 maintenance",
            "shutdown -h -r +0 hypervisor initiated shutdown",
        ]
    finally:
        ctx.close()


def test_fallback_shutdown_failure_and_busybox(stand_ins: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    _recorder(stand_ins, "poweroff", log)
    _recorder(stand_ins, "wall", log)
    ctx = _node({"power_backend": "binaries", "bin_path": str(stand_ins)})
    try:
        assert ctx.ask(m.SHUTDOWN, {"mode": "powerdown", "delay_s": 5, "message": "bye"}).ok
        assert log.read_text().splitlines() == ["wall bye", "poweroff -d 5"]
        _recorder(stand_ins, "shutdown", log, status=1)
        reply = ctx.ask(m.SHUTDOWN, {"mode": "powerdown"})
        assert not reply.ok and reply.message == "child process has failed to shutdown"
    finally:
        ctx.close()


def test_fallback_suspend_pm_utils_and_sysfs(stand_ins: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    sysfs = tmp_path / "sys"
    (sysfs / "power").mkdir(parents=True)
    state = sysfs / "power" / "state"
    state.write_text("freeze mem\n")
    _recorder(stand_ins, "pm-is-supported", log, status=1)
    ctx = _node({"power_backend": "binaries", "bin_path": str(stand_ins), "sysfs_root": str(sysfs)})
    try:
        assert ctx.ask(m.SUSPEND, {"mode": "ram"}).ok
        assert state.read_text() == "mem"
        state.write_text("freeze mem\n")
        for mode in ("disk", "hybrid"):
            reply = ctx.ask(m.SUSPEND, {"mode": mode})
            assert not reply.ok and reply.message == UNSUPPORTED_SUSPEND
        _recorder(stand_ins, "pm-is-supported", log, status=0)
        _recorder(stand_ins, "pm-hibernate", log)
        assert ctx.ask(m.SUSPEND, {"mode": "disk"}).ok
        assert log.read_text().splitlines()[-2:] == ["pm-is-supported --hibernate", "pm-hibernate "]
    finally:
        ctx.close()


def test_no_systemd_and_no_binaries_is_an_honest_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ctx = _node({"power_backend": "binaries", "bin_path": str(empty), "sysfs_root": str(tmp_path / "nosys")})
    try:
        reply = ctx.ask(m.SUSPEND, {"mode": "ram"})
        assert not reply.ok and reply.message == UNSUPPORTED_SUSPEND
        reply = ctx.ask(m.SHUTDOWN, {"mode": "powerdown"})
        assert not reply.ok and reply.message == "the helper program 'shutdown' was not found"
    finally:
        ctx.close()
        shutil.rmtree(empty, ignore_errors=True)
