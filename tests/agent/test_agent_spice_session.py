"""The whole stack for the SPICE mouse: a real ``concierge run`` (transport with a SPICE channel,
input with a file sink, session gateway) and a real ``concierge session`` (the per-user
supervisor: link + display actor on real Xvfb), driven by a SPICE host simulator.

Checks: the geometry of the user's display reaches the root input actor through the gateway, a
MOUSE_STATE becomes the exact input_event records, and kill -9 of a user actor (or of the
whole compact session group) restarts it alone (the root agent's pids do not change) and the mouse still works.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.actors.input.events import ABS_X, ABS_Y, EV_ABS, EV_SYN, decode_events
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.spice_host import SpiceHost
from concierge.testing.xservers import xvfb

SRC = Path(__file__).resolve().parents[2] / "src"


def session_cli(session_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "concierge", "--runtime-dir", str(session_dir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)


def wait(cond: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


class Stack:
    def __init__(self, root: Path, display: str, layout: tuple[str, ...]) -> None:
        self.layout = layout
        self.sink = root / "events"
        self.spice = root / "spice.sock"
        actors = {
            "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
            "input": {"entry": "concierge.actors.input.node:InputNode"},
            "session": {
                "entry": "concierge.actors.session.gateway:SessionGatewayNode",
                "settings": {"users": [os.getuid()], "scan_run_user": False, "logind_bus": ""},
            },
        }
        args = (
            "--log-format",
            "text",
            "--channel",
            f"spice=unix-listen:{self.spice}",
            "--input-sink",
            f"file:{self.sink}",
        )
        (root / "agent").mkdir()
        self.agent = AgentHarness(root / "agent", catalog(actors), args=args)
        self.session_dir = root / "session"
        self.session_log = open(root / "session.log", "wb")  # noqa: SIM115 - closed in stop()
        self.display = display
        self.session: subprocess.Popen[bytes] | None = None
        self.victim = "display"

    def start(self) -> None:
        self.agent.start()
        self.start_session()

    def start_session(self) -> None:
        """What the systemd user unit does (Restart=on-failure)."""
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        cmd = [
            sys.executable, "-m", "concierge", "--runtime-dir", str(self.session_dir), "session",
            "--gateway-dir", str(self.agent.runtime_dir), "--display", self.display, *self.layout,
            "--log-format", "text",
        ]  # fmt: skip
        self.session = subprocess.Popen(cmd, env=env, stdout=self.session_log, stderr=self.session_log)

    def session_status(self) -> dict[str, Any]:
        result = session_cli(self.session_dir, "--json", "status")
        return json.loads(result.stdout) if result.stdout else {"actors": []}

    def events(self) -> list[tuple[int, int, int]]:
        return decode_events(self.sink.read_bytes()) if self.sink.exists() else []

    def stop(self) -> None:
        if self.session is not None:
            self.session.terminate()
            try:
                self.session.wait(15)
            except subprocess.TimeoutExpired:
                self.session.kill()
        self.session_log.close()
        self.agent.stop()


#: (concierge session options, the user actor killed in the test)
LAYOUTS = {"split": (("--split", "--only", "display"), "display"), "group": ((), "session")}


@pytest.fixture(params=sorted(LAYOUTS))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with xvfb(1280, 800) as display:
        rig = Stack(tmp_path, display, LAYOUTS[request.param][0])
        rig.victim = LAYOUTS[request.param][1]
        try:
            rig.start()
            yield rig
        finally:
            rig.stop()


def mouse_lands(rig: Stack, host: SpiceHost, x: int, y: int) -> bool:
    before = len(rig.events())
    host.mouse(x, y, 0, 0)
    try:
        wait(lambda: len(rig.events()) > before, 3, "events")
    except AssertionError:
        return False
    new = rig.events()[before:]
    return (EV_ABS, ABS_X, x) in new and (EV_ABS, ABS_Y, y) in new and new[-1] == (EV_SYN, 0, 0)


def test_mouse_through_root_agent_and_user_session(stack: Stack) -> None:
    wait(
        lambda: (
            all(a["state"] == "RUNNING" for a in stack.session_status()["actors"]) and stack.session_status()["actors"]
        ),
        30,
        "session actors RUNNING",
    )
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    wait(lambda: conn.connect_ex(str(stack.spice)) == 0, 10, "spice channel")
    host = SpiceHost(conn.fileno())
    host.handshake()
    assert wait(lambda: mouse_lands(stack, host, 10, 20), 30, "mouse mapped with the session's geometry")

    root_pids = {a["id"]: a["pid"] for a in stack.agent.status()["actors"]}
    display = next(a for a in stack.session_status()["actors"] if a["id"] == stack.victim)
    os.kill(display["pid"], signal.SIGKILL)
    wait(
        lambda: (d := next(a for a in stack.session_status()["actors"] if a["id"] == stack.victim))["state"]
        == "RUNNING"
        and d["pid"] != display["pid"],
        30, "display actor restarted by the session supervisor",
    )  # fmt: skip
    assert {a["id"]: a["pid"] for a in stack.agent.status()["actors"]} == root_pids, "the root agent never notices"
    assert wait(lambda: mouse_lands(stack, host, 700, 400), 30, "mouse still mapped")
    conn.close()


def test_kill_input_and_transport_the_mouse_comes_back(stack: Stack) -> None:
    wait(
        lambda: (
            stack.session_status()["actors"] and all(a["state"] == "RUNNING" for a in stack.session_status()["actors"])
        ),
        30,
        "session RUNNING",
    )
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    wait(lambda: conn.connect_ex(str(stack.spice)) == 0, 10, "spice channel")
    host = SpiceHost(conn.fileno())
    host.handshake()
    assert wait(lambda: mouse_lands(stack, host, 30, 40), 30, "mouse mapped")
    session_pids = {a["id"]: a["pid"] for a in stack.session_status()["actors"]}

    def pids() -> dict[str, int]:
        return {a["id"]: a["pid"] for a in stack.agent.status()["actors"]}

    before = pids()
    os.kill(before["input"], signal.SIGKILL)
    wait(
        lambda: pids()["input"] not in (None, before["input"]) and stack.agent.actor("input")["state"] == "RUNNING",
        30,
        "input back",
    )
    assert {k: v for k, v in pids().items() if k != "input"} == {k: v for k, v in before.items() if k != "input"}
    assert wait(lambda: mouse_lands(stack, host, 50, 60), 30, "mouse back after the input actor restarted")

    before = pids()
    os.kill(before["transport"], signal.SIGKILL)
    wait(
        lambda: (
            pids()["transport"] not in (None, before["transport"])
            and stack.agent.actor("transport")["state"] == "RUNNING"
        ),
        30,
        "transport back",
    )
    assert {k: v for k, v in pids().items() if k != "transport"} == {
        k: v for k, v in before.items() if k != "transport"
    }
    conn.close()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the SPICE server re-opens its chardev
    wait(lambda: conn.connect_ex(str(stack.spice)) == 0, 10, "spice channel again")
    host = SpiceHost(conn.fileno())
    host.handshake()
    assert wait(lambda: mouse_lands(stack, host, 70, 80), 30, "mouse back after the transport actor restarted")
    assert {a["id"]: a["pid"] for a in stack.session_status()["actors"]} == session_pids, (
        "the user session never noticed"
    )

    # kill -9 of the session supervisor: its actors go with it, the unit starts it again
    before = pids()
    assert stack.session is not None
    stack.session.kill()
    stack.session.wait(10)
    wait(lambda: all(not os.path.exists(f"/proc/{p}") for p in session_pids.values()), 10, "user actors gone")
    stack.start_session()
    assert wait(lambda: mouse_lands(stack, host, 90, 100), 30, "mouse back after the session supervisor restarted")
    assert pids() == before, "the root agent never notices a user session dying"
    conn.close()
