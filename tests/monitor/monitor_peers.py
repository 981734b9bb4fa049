"""Real peers for the monitor tests: a qemu-ga started on a unix socket (raw JSON client),
a private dbus-daemon with python-dbusmock's logind template, and a FakeContext-run node."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from concierge.actors.monitor.node import MonitorNode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require, require_binary


class RawQga:
    """A line-oriented raw JSON client; returns the exact text of each reply's ``return``."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")

    def raw(self, command: str) -> str:
        """The reply line (without newline)."""
        self.file.write(json.dumps({"execute": command}).encode() + b"\n")
        self.file.flush()
        return self.file.readline().decode().rstrip("\n")

    def call(self, command: str) -> Any:
        """The decoded ``return`` value (order-preserving dicts)."""
        reply = json.loads(self.raw(command))
        assert "return" in reply, reply
        return reply["return"]

    def return_text(self, command: str) -> str:
        """The ``return`` member re-serialised exactly as qemu-ga formats JSON."""
        return json.dumps(self.call(command))

    def close(self) -> None:
        """Close the connection."""
        self.file.close()
        self.sock.close()


@contextlib.contextmanager
def qemu_ga(tmp: Path, *, utmp: bytes | None = None) -> Iterator[RawQga]:
    """Run the real qemu-ga; with ``utmp``, inside a private mount namespace whose /run
    holds that utmp (so nothing outside the test sees it)."""
    binary = require_binary("qemu-ga", "qemu-guest-agent")
    sock = tmp / "qga.sock"
    state = tmp / "qga-state"
    state.mkdir(exist_ok=True)
    cmd = [binary, "-m", "unix-listen", "-p", str(sock), "-t", str(state)]
    if utmp is not None:
        unshare = shutil.which("unshare")
        require(unshare is not None, "unshare not found (apt install util-linux)")
        (tmp / "utmp").write_bytes(utmp)
        script = (
            f'mount --make-rprivate / && mount -t tmpfs concierge-test /run && cp {tmp / "utmp"} /run/utmp && exec "$@"'
        )
        cmd = [str(unshare), "-m", "sh", "-c", script, "sh", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"qemu-ga did not start: {err}")
            time.sleep(0.01)
        client = RawQga(str(sock))
        try:
            yield client
        finally:
            client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@contextlib.contextmanager
def monitor_node(settings: Mapping[str, Any] | None = None) -> Iterator[FakeContext]:
    """A MonitorNode running in a FakeContext."""
    ctx = FakeContext("monitor", settings or {})
    try:
        ctx.run_node(MonitorNode)
        yield ctx
    finally:
        ctx.close()


@contextlib.contextmanager
def logind_mock(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private dbus-daemon plus python-dbusmock's logind template; yields the bus address
    and the dbusmock process (send it AddSession via dbus)."""
    daemon = require_binary("dbus-daemon", "dbus")
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import dbusmock"], capture_output=True, check=False)
    require(probe.returncode == 0, "python-dbusmock missing (apt install python3-dbusmock)")
    config = tmp / "bus.conf"
    config.write_text(
        '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" '
        '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">'
        f"<busconfig><type>system</type><listen>unix:path={tmp}/bus</listen>"
        '<auth>EXTERNAL</auth><policy context="default"><allow send_destination="*"/>'
        '<allow own="*"/><allow eavesdrop="true"/></policy></busconfig>'
    )
    bus = subprocess.Popen([daemon, f"--config-file={config}", "--nofork", "--nopidfile"])
    address = f"unix:path={tmp}/bus"
    mock: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 10
        while not (tmp / "bus").exists():
            assert time.monotonic() < deadline, "dbus-daemon did not start"
            time.sleep(0.01)
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
        mock = subprocess.Popen(
            [system_python, "-m", "dbusmock", "--system", "--template", "logind"],
            env=env,
            stdout=subprocess.PIPE,
        )
        ready = (
            subprocess.run(
                ["gdbus", "wait", "--system", "--timeout", "10", "org.freedesktop.login1"],
                env=env,
                check=False,
                capture_output=True,
            )
            if shutil.which("gdbus")
            else None
        )
        if ready is None:
            time.sleep(1.0)
        yield address, mock
    finally:
        if mock is not None:
            mock.terminate()
            mock.wait(timeout=5)
            if mock.stdout:
                mock.stdout.close()
        bus.terminate()
        bus.wait(timeout=5)


def add_logind_session(address: str, session_id: str, uid: int, user: str) -> None:
    """Call the template's AddSession through the system python's dbus bindings."""
    code = (
        "import dbus;"
        f"b=dbus.bus.BusConnection({address!r});"
        "o=b.get_object('org.freedesktop.login1','/org/freedesktop/login1');"
        f"o.AddSession({session_id!r},'seat0',dbus.UInt32({uid}),{user!r},True,"
        "dbus_interface='org.freedesktop.DBus.Mock')"
    )
    subprocess.run(["/usr/bin/python3", "-c", code], check=True, timeout=20)
