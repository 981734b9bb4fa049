"""A private system-type D-Bus and python-dbusmock's logind template, for tests and benchmarks.

The bus lets anyone own and call anything (it is private to one test); the logind mock runs
under Debian's python3 (which has the dbus bindings dbusmock needs) and is driven through
jeepney.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, message_bus, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

from concierge.testing import peers as peer_check

SYSTEM_LIKE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <keep_umask/>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""
SYS_PYTHON = "/usr/bin/python3"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def private_system_bus(directory: Path) -> Iterator[str]:
    """A private dbus-daemon of the system type in ``directory``; yields its address."""
    daemon = peer_check.require_binary("dbus-daemon", "dbus")
    sock = directory / "system_bus_socket"
    conf = directory / "system-like.conf"
    conf.write_text(SYSTEM_LIKE.format(path=sock))
    proc = subprocess.Popen([daemon, f"--config-file={conf}", "--nofork"], stdout=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < end:
        time.sleep(0.01)
    try:
        assert sock.exists(), "dbus-daemon did not start"
        yield f"unix:path={sock}"
    finally:
        _stop(proc)


def system_python_imports(module: str) -> bool:
    """True if the system python (the one with Debian's bindings) can import ``module``."""
    proc = subprocess.run([SYS_PYTHON, "-c", f"import {module}"], capture_output=True, check=False)
    return proc.returncode == 0


class LogindMock:
    """python-dbusmock's logind template on the private bus, driven through jeepney."""

    def __init__(self, address: str) -> None:
        peer_check.require(
            system_python_imports("dbusmock"),
            "python3-dbusmock missing (apt install python3-dbusmock)",
        )
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
        self.proc = subprocess.Popen(
            [SYS_PYTHON, "-m", "dbusmock", "--template", "logind"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.conn = open_dbus_connection(address)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.name_has_owner("org.freedesktop.login1"):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("logind mock did not start")

    def name_has_owner(self, name: str) -> bool:
        return bool(unwrap_msg(self.conn.send_and_get_reply(message_bus.NameHasOwner(name), timeout=5))[0])

    def call(self, path: str, iface: str, method: str, sig: str | None = None, body: tuple[Any, ...] = ()) -> Any:
        addr = DBusAddress(path, bus_name="org.freedesktop.login1", interface=iface)
        return unwrap_msg(self.conn.send_and_get_reply(new_method_call(addr, method, sig, body), timeout=5))

    def add_session(self, sid: str, uid: int, user: str, active: bool = True) -> str:
        path = self.call(
            "/org/freedesktop/login1",
            "org.freedesktop.DBus.Mock",
            "AddSession",
            "ssusb",
            (sid, "seat0", uid, user, active),
        )[0]
        self.emit(
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "SessionNew",
            "so",
            [sid, path],
        )
        return str(path)

    def remove_session(self, sid: str) -> None:
        path = f"/org/freedesktop/login1/session/{sid}"
        self.call("/org/freedesktop/login1", "org.freedesktop.DBus.Mock", "RemoveObject", "o", (path,))
        self.emit(
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "SessionRemoved",
            "so",
            [sid, path],
        )

    def emit(self, path: str, iface: str, name: str, sig: str, args: list[Any]) -> None:
        self.call(
            path,
            "org.freedesktop.DBus.Mock",
            "EmitSignal",
            "sssav",
            (iface, name, sig, [(s, a) for s, a in zip(_split_sig(sig), args, strict=True)]),
        )

    def set_locked(self, sid: str, locked: bool) -> None:
        self.call(
            f"/org/freedesktop/login1/session/{sid}",
            "org.freedesktop.login1.Session",
            "SetLockedHint",
            "b",
            (locked,),
        )

    def calls(self, path: str, method: str) -> list[Any]:
        return list(self.call(path, "org.freedesktop.DBus.Mock", "GetMethodCalls", "s", (method,))[0])

    def close(self) -> None:
        self.conn.close()
        _stop(self.proc)


def _split_sig(sig: str) -> list[str]:
    return list(sig)  # the signals used here have single-character argument types
