"""The input actor lends its sink to the transport (SCM_RIGHTS), on a real ``concierge run``.

A real supervised transport (SPICE channel on a unix socket, driven by the host simulator) and
input actor (raw input_event file or FIFO sink, as ``spice-vdagentd -f``); the geometry is cast
by the test (``geometry_from = ""``: no session needed). Checks: once lent, the transport writes
the exact stock sequences with the input actor's validation (unknown display dropped, coordinates
clamped, buttons masked); a geometry change takes the sink back and remaps; a sink that falls
behind hands writing back to the input actor without losing a click, then lends again; kill -9
of the input actor makes the transport drop its copy at once (no orphan device), and the new
incarnation lends again.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.actors.input.events import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    EV_ABS,
    EV_KEY,
    EV_REL,
    EV_SYN,
    REL_WHEEL,
    decode_events,
)
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.rpc import ActorClient
from concierge.testing.spice_host import SpiceHost

SYN = (EV_SYN, 0, 0)
L, U = 2, 16
TWO_MONITORS = {
    "monitors": [
        {"x": 0, "y": 0, "width": 1280, "height": 800},
        {"x": 1280, "y": 0, "width": 1024, "height": 768},
    ]
}


def wait(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out: {what}")


class Agent:
    """transport + input under a real supervisor, a SPICE host and an actor client."""

    def __init__(self, root: Path, sink: Path) -> None:
        self.sink = sink
        spice = self.spice = root / "spice.sock"
        actors = {
            "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
            "input": {"entry": "concierge.actors.input.node:InputNode", "settings": {"geometry_from": ""}},
        }
        args = ("--log-format", "text", "--channel", f"spice=unix-listen:{spice}", "--input-sink", f"file:{sink}")
        self.harness = AgentHarness(root, catalog(actors), args=args)
        self.harness.start()
        self.attach()
        self.client = ActorClient(self.harness.runtime_dir, "tester")

    def attach(self) -> None:
        """Connect the host to the SPICE port (again) and do the capability handshake."""
        self.conn = socket.socket(socket.AF_UNIX)
        wait(lambda: self.conn.connect_ex(str(self.spice)) == 0, 20, "the SPICE port")
        self.host = SpiceHost(self.conn.fileno())
        self.host.handshake()

    def pid(self, actor_id: str) -> int:
        return int(self.harness.actor(actor_id)["pid"] or 0)

    def status(self) -> dict[str, Any]:
        reply = self.client.request("input", "input.status", {}, timeout_s=5)
        return reply.body if reply.ok else {}

    def lent(self) -> bool:
        return self.status().get("writer") == "transport"

    def lend(self, geometry: dict[str, Any]) -> None:
        """Set the geometry and move until the transport writes (an offer needs a front-end)."""
        self.client.cast("input", "input.geometry", geometry)

        def moved_and_lent() -> bool:
            self.host.mouse(1, 1, 0, 0)
            return self.lent()

        wait(moved_and_lent, 20, "the sink lent to the transport")

    def transport_copies(self) -> int:
        """Descriptors of the sink open in the transport process."""
        fd_dir = Path(f"/proc/{self.pid('transport')}/fd")
        count = 0
        for entry in fd_dir.iterdir():
            try:
                count += os.readlink(entry) == str(self.sink)
            except OSError:
                continue
        return count

    def close(self) -> None:
        self.client.close()
        self.conn.close()
        self.harness.stop()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path, tmp_path / "events")
    try:
        yield a
    finally:
        a.close()


def _new_events(agent: Agent, before: int, syns: int) -> list[tuple[int, int, int]]:
    def enough() -> list[tuple[int, int, int]] | None:
        events = decode_events(agent.sink.read_bytes())[before:]
        return events if events.count(SYN) >= syns else None

    return wait(enough, 10, f"{syns} reports")  # type: ignore[no-any-return]


@pytest.mark.peer
def test_spice_lend_transport_writes_exact_validated_reports(agent: Agent) -> None:
    agent.lend(TWO_MONITORS)
    assert agent.transport_copies() == 1
    before = len(decode_events(agent.sink.read_bytes()))
    host = agent.host
    host.mouse(10, 20, 0, 1)
    host.mouse(10, 20, L, 1)  # left down
    host.mouse(30, 40, 0, 0)  # move + left up
    host.mouse(30, 40, U, 0)  # wheel up
    host.mouse(30, 40, 0, 0)
    host.mouse(30, 40, 0, 9)  # unknown display: dropped without SYN
    host.mouse(0xFFFF_FFFF, 7, 0xFFFF_FF00, 0)  # clamped to display 0, unknown buttons ignored
    assert _new_events(agent, before, 6) == [
        (EV_ABS, ABS_X, 1290), (EV_ABS, ABS_Y, 20), SYN,
        (EV_KEY, BTN_LEFT, 1), SYN,
        (EV_ABS, ABS_X, 30), (EV_ABS, ABS_Y, 40), (EV_KEY, BTN_LEFT, 0), SYN,
        (EV_REL, REL_WHEEL, 1), SYN,
        SYN,
        (EV_ABS, ABS_X, 1279), (EV_ABS, ABS_Y, 7), SYN,
    ]  # fmt: skip
    assert agent.lent()

    # a geometry change takes the sink back, remaps, and lends it again
    agent.client.cast("input", "input.geometry", {"monitors": [{"x": 100, "y": 0, "width": 800, "height": 600}]})

    def remapped() -> bool:
        agent.host.mouse(5, 6, 0, 0)
        return (EV_ABS, ABS_X, 105) in decode_events(agent.sink.read_bytes())[before:]

    wait(remapped, 10, "the new geometry")
    wait(agent.lent, 10, "lent again after the change")
    assert agent.transport_copies() == 1

    # kill -9 of the owner: the transport drops its copy on the life pipe's hang-up
    old = agent.pid("input")
    os.kill(old, signal.SIGKILL)
    wait(lambda: agent.transport_copies() == 0, 10, "the transport to drop the dead owner's sink")
    wait(lambda: agent.pid("input") not in (0, old), 20, "the input actor restarted")
    wait(lambda: agent.status().get("sink"), 20, "the new input actor answering")
    agent.lend(TWO_MONITORS)
    assert agent.transport_copies() == 1
    before = len(decode_events(agent.sink.read_bytes()))
    host.mouse(7, 8, 0, 1)
    assert _new_events(agent, before, 1)[-3:] == [(EV_ABS, ABS_X, 1287), (EV_ABS, ABS_Y, 8), SYN]


@pytest.mark.peer
def test_spice_lend_survives_a_transport_kill(agent: Agent) -> None:
    """kill -9 of the transport: its copy dies with it; the input actor, seeing a state while
    its sink is lent, writes it itself with the state forgotten (both axes) and lends again."""
    agent.lend(TWO_MONITORS)
    agent.host.mouse(7, 8, 0, 1)
    old = agent.pid("transport")
    os.kill(old, signal.SIGKILL)
    agent.conn.close()
    wait(lambda: agent.pid("transport") not in (0, old), 20, "the transport restarted")
    agent.attach()
    before = len(decode_events(agent.sink.read_bytes()))
    agent.host.mouse(7, 8, 0, 1)  # the same position: only a forgotten state re-sends the axes
    assert _new_events(agent, before, 1) == [(EV_ABS, ABS_X, 1287), (EV_ABS, ABS_Y, 8), SYN]

    def lent_again() -> bool:
        agent.host.mouse(9, 9, 0, 0)
        return agent.lent()

    wait(lent_again, 20, "lent to the new transport")
    assert agent.transport_copies() == 1
    metrics = agent.harness.cli("--json", "metrics").stdout
    assert "input.lend_lost" in metrics


@pytest.mark.peer
def test_spice_lend_sink_behind_falls_back_without_losing_a_click(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    agent = Agent(tmp_path, fifo)
    data = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            data.extend(chunk)

    try:
        agent.client.cast("input", "input.geometry", {"monitors": [{"x": 0, "y": 0, "width": 5000, "height": 5000}]})

        def lent() -> bool:
            agent.host.mouse(1, 1, 0, 0)
            drain()
            return agent.lent()

        wait(lent, 20, "the sink lent to the transport")
        time.sleep(0.2)
        drain()
        data.clear()
        # nobody reads: the pipe (64 KiB, ~1360 moves) fills; the transport gives writing back
        for i in range(1600):
            agent.host.mouse(100 + i, 7, 0, 0)
        time.sleep(0.5)
        agent.host.mouse(1, 1, L, 0)
        agent.host.mouse(2, 2, 0, 0)
        agent.host.mouse(3, 3, 0, 0)

        def settled() -> bool:  # (an offer lost to the full lane is made again on a move)
            agent.host.mouse(3, 3, 0, 0)
            drain()
            status = agent.status()
            return status.get("pending") == 0 and status.get("writer") == "transport"

        try:
            wait(settled, 20, "the backlog written and the sink lent again")
        except AssertionError:
            metrics = agent.harness.cli("--json", "metrics").stdout
            raise AssertionError(f"status {agent.status()}\nmetrics {metrics}") from None
        time.sleep(0.1)
        drain()
        events = decode_events(bytes(data))
        assert [e for e in events if e[0] == EV_KEY] == [(EV_KEY, BTN_LEFT, 1), (EV_KEY, BTN_LEFT, 0)]
        # the last state is where the pointer ends (moves behind a slow reader may coalesce)
        assert [e for e in events if e[:2] == (EV_ABS, ABS_X)][-1][2] == 3
        assert [e for e in events if e[:2] == (EV_ABS, ABS_Y)][-1][2] == 3
        assert events[-1] == SYN
        metrics = agent.harness.cli("--json", "metrics").stdout
        assert "spice.mouse_direct_failed" in metrics
    finally:
        agent.close()
        os.close(reader)
