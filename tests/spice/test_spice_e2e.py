"""End to end: host simulator -> front-end -> input actor -> file sink, with the geometry coming
from a real session process reading RandR from real Xvfb / Xorg+dummy through the gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spice_testkit import RecordingContext, wait_for

from concierge.actors.input.events import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    BTN_RIGHT,
    EV_ABS,
    EV_KEY,
    EV_REL,
    EV_SYN,
    REL_WHEEL,
    decode_events,
)
from concierge.actors.input.node import InputNode
from concierge.actors.session.gateway import SessionGatewayNode
from concierge.testing.context import FakeContext
from concierge.testing.fdloop import PollingFakeContext
from concierge.testing.spice_host import LinkNode, SpiceHost, pty_channel, unix_channel
from concierge.testing.xservers import xorg_dummy, xrandr, xvfb
from concierge.transport.spice.wire import MsgType

SRC = Path(__file__).resolve().parents[2] / "src"
SYN = (EV_SYN, 0, 0)


class Rig:
    """transport (LinkNode) + input + session gateway wired as peers, and a SpiceHost."""

    def __init__(self, channel: str, tmp: Path) -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix="cc-spice-e2e-"))
        self.sink = tmp / "events"
        host_fd, guest_fd = unix_channel() if channel == "unix" else pty_channel()
        self.host_fd = host_fd
        self.input = FakeContext("input", {"sink": f"file:{self.sink}"})
        self.input.run_node(InputNode)
        self.gateway = PollingFakeContext(
            "session",
            {"users": [os.getuid()], "scan_run_user": False, "logind_bus": ""},
            runtime_dir=self.rundir,
            peers={"input": self.input},
        )
        self.transport = RecordingContext(
            "transport", {"fd": guest_fd}, peers={"input": self.input, "session": self.gateway}
        )
        self.transport.blobs_seen = []
        self.gateway.peers["transport"] = self.transport
        self.transport.run_node(LinkNode)
        self.gateway.run_node(SessionGatewayNode)
        self.host = SpiceHost(host_fd)
        self.agent: subprocess.Popen[bytes] | None = None

    def start_agent(self, display: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        argv = [
            sys.executable,
            "-m",
            "concierge.actors.session.agent",
            "--runtime-dir",
            str(self.rundir),
            "--display",
            display,
        ]
        self.agent = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)

    def monitors(self) -> list[dict[str, Any]]:
        return list(self.input.ask("input.status").unwrap()["monitors"])

    def events(self) -> list[tuple[int, int, int]]:
        self.input.ask("input.status")  # barrier: every earlier cast was handled
        return decode_events(self.sink.read_bytes()) if self.sink.exists() else []

    def close(self) -> None:
        if self.agent is not None:
            self.agent.kill()
            self.agent.wait(5)
        self.transport.close()
        self.gateway.close()
        self.input.close()
        os.close(self.host_fd)
        shutil.rmtree(self.rundir, ignore_errors=True)


@pytest.fixture(params=["unix", "pty"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(request.param, tmp_path)
    yield r
    r.close()


def _wait_events(rig: Rig, n: int) -> list[tuple[int, int, int]]:
    try:
        return wait_for(lambda: (ev := rig.events()).count(SYN) >= n and ev, 15)  # type: ignore[no-any-return]
    except AssertionError:
        seen = [c for c in rig.transport.casts if c[1] == "input.mouse"]
        raise AssertionError(
            f"events {rig.events()} casts {seen} counters {dict(rig.input.counters)} "
            f"{dict(rig.transport.counters)} monitors {rig.monitors()}"
        ) from None


@pytest.mark.peer
def test_spice_e2e_xvfb_one_monitor(rig: Rig) -> None:
    with xvfb(1280, 800) as display:
        rig.start_agent(display)
        wait_for(
            lambda: rig.monitors() == [{"x": 0, "y": 0, "width": 1280, "height": 800, "display_id": 0}],
            20,
        )
        wait_for(lambda: ("session.spice_ready", {"ready": True}) in rig.gateway.published)
        rig.host.handshake()
        rig.host.mouse(10, 20, 0, 0)
        rig.host.mouse(10, 20, 2, 0)  # left down
        rig.host.mouse(30, 40, 0, 0)  # move + left up
        rig.host.mouse(30, 40, 16, 0)  # wheel up press
        rig.host.mouse(30, 40, 0, 0)  # release
        rig.host.mouse(30, 40, 32, 0)  # wheel down
        rig.host.mouse(30, 40, 8, 1)  # unknown display: dropped, no SYN
        assert _wait_events(rig, 6) == [
            (EV_ABS, ABS_X, 10), (EV_ABS, ABS_Y, 20), SYN,
            (EV_KEY, BTN_LEFT, 1), SYN,
            (EV_ABS, ABS_X, 30), (EV_ABS, ABS_Y, 40), (EV_KEY, BTN_LEFT, 0), SYN,
            (EV_REL, REL_WHEEL, 1), SYN,
            SYN,
            (EV_REL, REL_WHEEL, -1), SYN,
        ]  # fmt: skip
        assert BTN_RIGHT not in {code for _, code, _ in rig.events()}
        # client -> front-end -> gateway -> session process (no clipboard / file actor yet) and
        # back: the client gets its refusals at once instead of waiting forever
        rig.host.send(MsgType.CLIPBOARD_REQUEST, {"selection": 1, "type": 1})
        assert rig.host.read(10)[1:] == (MsgType.CLIPBOARD, {"selection": 1, "type": 0}, b"")
        keyfile = "[vdagent-file-xfer]\nname=a.txt\nsize=3\n"
        rig.host.send(MsgType.FILE_XFER_START, {"id": 4, "data": keyfile})
        assert rig.host.read(10)[1:3] == (
            MsgType.FILE_XFER_STATUS,
            {"id": 4, "result": 7, "data": b""},
        )


@pytest.mark.peer
def test_spice_e2e_xorg_dummy_two_monitors(rig: Rig, tmp_path: Path) -> None:
    with xorg_dummy(tmp_path) as display:
        rig.start_agent(display)
        wait_for(lambda: len(rig.monitors()) == 1, 20)
        # a RandR change in the running session reaches the input actor
        xrandr(display, "--addmode", "DUMMY1", "1024x768_60.00")
        xrandr(display, "--output", "DUMMY1", "--mode", "1024x768_60.00", "--pos", "1280x0")
        two = [
            {"x": 0, "y": 0, "width": 1280, "height": 800, "display_id": 0},
            {"x": 1280, "y": 0, "width": 1024, "height": 768, "display_id": 1},
        ]
        wait_for(lambda: rig.monitors() == two, 20)
        assert rig.input.ask("input.status").unwrap()["width"] == 2304
        rig.host.handshake()
        rig.host.mouse(10, 10, 0, 1)
        rig.host.mouse(5, 6, 0, 0)
        assert _wait_events(rig, 2) == [
            (EV_ABS, ABS_X, 1290), (EV_ABS, ABS_Y, 10), SYN,
            (EV_ABS, ABS_X, 5), (EV_ABS, ABS_Y, 6), SYN,
        ]  # fmt: skip
        # the session process dies: the geometry is withdrawn and mouse states are dropped
        assert rig.agent is not None
        rig.agent.kill()
        rig.agent.wait(5)
        wait_for(lambda: rig.monitors() == [], 10)
        wait_for(lambda: rig.gateway.published[-1] == ("session.spice_ready", {"ready": False}))
        rig.host.mouse(50, 50, 0, 0)
        rig.input.ask("input.status")
        wait_for(lambda: rig.input.counters["input.unknown_display"] >= 1)
        assert rig.events().count(SYN) == 2
        # a new session process (what the user unit's Restart= does) brings the mouse back
        rig.start_agent(display)
        wait_for(lambda: rig.monitors() == two, 20)
        rig.host.mouse(10, 10, 0, 1)
        assert _wait_events(rig, 3)[-3:] == [(EV_ABS, ABS_X, 1290), (EV_ABS, ABS_Y, 10), SYN]
