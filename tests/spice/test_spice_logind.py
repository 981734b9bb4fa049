"""Session gateway with logind (python-dbusmock on a private system-type bus): active-session
arbitration on seat0, session switch, locked and greeter sessions refusing file transfers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spice_gwclient import UID_A, UID_B, Client, hello
from spice_testkit import wait_for

from concierge.actors.session.gateway import SessionGatewayNode
from concierge.testing.dbus import SYSTEM_LIKE
from concierge.testing.fdloop import PollingFakeContext
from concierge.testing.peers import require, require_binary

LOGIN1 = "/org/freedesktop/login1"
MOCK = "org.freedesktop.DBus.Mock"


class Logind:
    """A private system bus with the dbusmock logind template, driven through jeepney."""

    def __init__(self, tmp: Path) -> None:
        daemon = require_binary("dbus-daemon", "dbus")
        ok = (
            subprocess.run(["/usr/bin/python3", "-c", "import dbusmock"], check=False, capture_output=True).returncode
            == 0
        )
        require(ok, "python3-dbusmock missing (apt install python3-dbusmock)")
        sock = tmp / "system_bus_socket"
        (tmp / "bus.conf").write_text(SYSTEM_LIKE.format(path=sock))
        self.address = f"unix:path={sock}"
        self.bus = subprocess.Popen(
            [daemon, f"--config-file={tmp / 'bus.conf'}", "--nofork"], stderr=subprocess.DEVNULL
        )
        env = {"DBUS_SYSTEM_BUS_ADDRESS": self.address, "PATH": "/usr/bin:/bin"}
        self.mock = subprocess.Popen(
            ["/usr/bin/python3", "-m", "dbusmock", "--template", "logind"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.conn: Any = wait_for(self._connect)
            wait_for(self._owned)
        except BaseException:
            self._stop_procs()
            raise

    def _connect(self) -> Any:
        from jeepney.io.blocking import open_dbus_connection

        try:
            return open_dbus_connection(bus=self.address)
        except OSError:  # the socket file exists a moment before dbus-daemon listens
            return None

    def _owned(self) -> bool:
        from jeepney import DBusAddress, new_method_call

        dbus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        msg = new_method_call(dbus, "NameHasOwner", "s", ("org.freedesktop.login1",))
        return bool(self.conn.send_and_get_reply(msg, timeout=2).body[0])

    def call(self, path: str, iface: str, method: str, sig: str | None = None, *args: Any) -> Any:
        from jeepney import DBusAddress, new_method_call

        addr = DBusAddress(path, bus_name="org.freedesktop.login1", interface=iface)
        reply = self.conn.send_and_get_reply(new_method_call(addr, method, sig, args), timeout=5)
        assert reply.header.message_type.name != "error", reply.body
        return reply.body

    def add_session(self, sid: str, uid: int, name: str) -> None:
        self.call(LOGIN1, MOCK, "AddSession", "ssusb", sid, "seat0", uid, name, True)
        self.set(f"{LOGIN1}/session/{sid}", "org.freedesktop.login1.Session", {"Type": ("s", "x11")})

    def set(self, path: str, iface: str, props: dict[str, tuple[str, Any]]) -> None:
        self.call(path, MOCK, "UpdateProperties", "sa{sv}", iface, props)

    def activate(self, sid: str) -> None:
        value = ("(so)", (sid, f"{LOGIN1}/session/{sid}"))
        seat = f"{LOGIN1}/seat/seat0"
        self.call(
            seat,
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            "org.freedesktop.login1.Seat",
            "ActiveSession",
            value,
        )

    def _stop_procs(self) -> None:
        for proc in (self.mock, self.bus):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.conn.close()
        self._stop_procs()


@pytest.fixture
def logind() -> Iterator[Logind]:
    tmp = Path(tempfile.mkdtemp(prefix="cc-spice-logind-"))
    mock = Logind(tmp)
    yield mock
    mock.close()
    shutil.rmtree(tmp, ignore_errors=True)
    for stale in Path(tempfile.gettempdir()).glob("dbusmock_data_*"):
        shutil.rmtree(stale, ignore_errors=True)


@pytest.fixture(params=[0.1, 60.0], ids=["poll", "signals"])
def gateway(logind: Logind, request: pytest.FixtureRequest) -> Iterator[tuple[PollingFakeContext, Path]]:
    """poll_s 60: only logind's signals can make the gateway notice changes in time."""
    rundir = Path(tempfile.mkdtemp(prefix="cc-spice-gwl-"))
    rundir.chmod(0o755)
    settings = {
        "users": [UID_A, UID_B],
        "scan_run_user": False,
        "logind_bus": logind.address,
        "poll_s": request.param,
    }
    ctx = PollingFakeContext("session", settings, runtime_dir=rundir)
    ctx.run_node(SessionGatewayNode)
    yield ctx, rundir
    ctx.close()
    shutil.rmtree(rundir, ignore_errors=True)


def _status(ctx: PollingFakeContext) -> dict[str, Any]:
    return dict(ctx.ask("session.status").unwrap())


@pytest.mark.peer
def test_spice_logind_active_session_and_switch(logind: Logind, gateway: tuple[PollingFakeContext, Path]) -> None:
    ctx, rundir = gateway
    logind.add_session("c1", UID_A, "alice")
    logind.add_session("c2", UID_B, "bob")  # the last added session is seat0's active one
    a = Client(rundir, UID_A, UID_A, "hold", hello())
    b = Client(rundir, UID_B, UID_B, "hold", hello())
    try:
        assert a.wait_frame("welcome")["session_id"] == "c1"
        assert b.wait_frame("welcome")["session_id"] == "c2"
        wait_for(lambda: _status(ctx)["active_session"] == "c2")
        assert _status(ctx)["logind"] is True
        logind.activate("c1")  # user switch on seat0
        wait_for(lambda: _status(ctx)["active_session"] == "c1")
        wait_for(lambda: ("active", {"active": False, "file_xfer": False}) in b.frames())
        wait_for(lambda: ("active", {"active": True, "file_xfer": True}) in a.frames())
    finally:
        a.stop()
        b.stop()


@pytest.mark.peer
def test_spice_logind_locked_and_greeter_refuse_transfers(
    logind: Logind, gateway: tuple[PollingFakeContext, Path]
) -> None:
    ctx, rundir = gateway
    logind.add_session("c1", UID_A, "alice")
    a = Client(rundir, UID_A, UID_A, "hold", hello())
    session = f"{LOGIN1}/session/c1"
    iface = "org.freedesktop.login1.Session"

    def refused_with(result: int, xid: int) -> None:
        ctx.tell("spice.file_xfer_start", {"id": xid, "data": "[vdagent-file-xfer]\nname=a\nsize=1\n"})
        expect = {"type": "file_xfer_status", "body": {"id": xid, "result": result, "data": b""}}
        try:
            wait_for(lambda: ("transport", "spice.send", expect) in ctx.casts)
        except AssertionError:
            raise AssertionError(f"{ctx.casts[-3:]} {_status(ctx)}") from None

    try:
        a.wait_frame("welcome")
        wait_for(lambda: _status(ctx)["active_session"] == "c1")
        ctx.tell("spice.file_xfer_start", {"id": 1, "data": "x"})
        assert a.wait_frame("spice.file_xfer_start") == {
            "id": 1,
            "data": "x",
        }  # unlocked user: forwarded
        logind.call(session, iface, "SetLockedHint", "b", True)
        wait_for(lambda: _status(ctx)["agents"][0]["locked"])
        refused_with(5, 2)  # SESSION_LOCKED
        logind.call(session, iface, "SetLockedHint", "b", False)
        logind.set(session, iface, {"Class": ("s", "greeter")})
        wait_for(lambda: _status(ctx)["agents"][0]["session_class"] == "greeter")
        refused_with(7, 3)  # DISABLED for greeters
    finally:
        a.stop()


@pytest.mark.peer
def test_spice_logind_session_of_another_uid_is_refused(
    logind: Logind, gateway: tuple[PollingFakeContext, Path]
) -> None:
    """logind places the connecting process in bob's session: alice's agent is refused.

    The endpoint and SO_PEERCRED say uid A; the session logind names for its PID belongs to uid
    B (what a process that slipped into another user's session scope would look like). The
    gateway must believe neither side alone and refuse, rather than serve bob's session to A.
    """
    ctx, rundir = gateway
    logind.add_session("c1", UID_A, "alice")
    logind.add_session("c2", UID_B, "bob")
    logind.call(
        LOGIN1,
        MOCK,
        "AddMethod",
        "sssss",
        "org.freedesktop.login1.Manager",
        "GetSessionByPID",
        "u",
        "o",
        f"ret = dbus.ObjectPath('{LOGIN1}/session/c2')",
    )
    a = Client(rundir, UID_A, UID_A, "hold", hello())
    try:
        assert a.wait_frame("reject") == {"reason": "the process's session belongs to another user"}
        assert "welcome" not in [t for t, _ in a.frames()]
        assert _status(ctx)["rejected"] == 1
        assert _status(ctx)["agents"] == []
    finally:
        a.stop()
    b = Client(rundir, UID_B, UID_B, "hold", hello())  # bob himself is welcome in c2
    try:
        assert b.wait_frame("welcome")["session_id"] == "c2"
    finally:
        b.stop()
