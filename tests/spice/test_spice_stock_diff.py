"""Differential test: the same MOUSE_STATE sequence through the stock spice-vdagentd (-f FIFO)
and through our input path must give the same input_event stream (types, codes, values)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from spice_testkit import wait_for

from concierge.actors.input.events import EV_SYN, decode_events
from concierge.actors.input.node import InputNode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require_binary
from concierge.testing.spice_host import SpiceHost
from concierge.testing.xservers import xvfb

L, M, R, U, D, S, E = (1 << i for i in range(1, 8))
SEQUENCE = [
    (100, 100, 0), (100, 100, L), (120, 130, L), (120, 130, 0), (120, 130, U), (120, 130, 0),
    (120, 130, D), (120, 130, 0), (5, 5, R | M), (5, 5, R | M | S), (6, 5, E), (6, 5, E),
    (0, 0, 0), (1919, 1079, L | U), (1919, 1079, D), (1919, 1079, 0),
]  # fmt: skip


def _read_until(fd: int, syns: int, timeout_s: float = 15.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)
        if decode_events(data).count((EV_SYN, 0, 0)) >= syns:
            return data
    raise AssertionError(f"stock daemon wrote {decode_events(data)}")


def _stock_events(tmp: Path) -> list[tuple[int, int, int]]:
    daemon_bin = require_binary("spice-vdagentd", "spice-vdagent")
    agent_bin = require_binary("spice-vdagent", "spice-vdagent")
    fifo, port, udscs = tmp / "uinput.fifo", tmp / "port.sock", tmp / "vdagentd.sock"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(port))
    listener.listen(1)
    listener.settimeout(30)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with xvfb(1920, 1080) as display:
            argv = [
                daemon_bin,
                "-x",
                "-X",
                "-f",
                "-s",
                str(port),
                "-S",
                str(udscs),
                "-u",
                str(fifo),
            ]
            procs.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
            wait_for(udscs.exists)
            env = {**os.environ, "NO_AT_BRIDGE": "1", "GDK_BACKEND": "x11", "DISPLAY": display,
                   "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp}/nobus"}  # fmt: skip
            argv = [agent_bin, "-x", "-s", str(port), "-S", str(udscs), "--display", display]
            procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL))
            conn, _ = listener.accept()  # the daemon opens the "port" once the agent has geometry
            host = SpiceHost(conn.fileno())
            host.handshake()
            for x, y, buttons in SEQUENCE:
                host.mouse(x, y, buttons, 0)
            data = _read_until(reader, len(SEQUENCE))
            conn.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        os.close(reader)
        listener.close()
    return decode_events(data)


def _our_events(tmp: Path) -> list[tuple[int, int, int]]:
    sink = tmp / "ours"
    ctx = FakeContext("input", {"sink": f"file:{sink}"})
    try:
        ctx.run_node(InputNode)
        ctx.tell(
            "input.geometry",
            {"monitors": [{"x": 0, "y": 0, "width": 1920, "height": 1080}]},
            src="session",
        )
        for x, y, buttons in SEQUENCE:
            ctx.tell("input.mouse", {"x": x, "y": y, "buttons": buttons, "display_id": 0})
        ctx.ask("input.status")
    finally:
        ctx.close()
    return decode_events(sink.read_bytes())


@pytest.mark.peer
def test_spice_same_events_as_stock_daemon() -> None:
    with tempfile.TemporaryDirectory(prefix="cc-spice-diff-") as tmp:
        stock = _stock_events(Path(tmp))
        ours = _our_events(Path(tmp))
    assert ours == stock
