"""Display actor's Mutter backend against a real dbus-daemon + python-dbusmock stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import sent, wait_until

from concierge.actors.display.node import DisplayNode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require, require_binary

TEMPLATE = Path(__file__).with_name("mutter_displayconfig_template.py")


@pytest.fixture()
def mutter_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    daemon = require_binary("dbus-daemon", "dbus")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import dbusmock"], capture_output=True, check=False)
    require(probe.returncode == 0, "python3-dbusmock missing (apt install python3-dbusmock)")
    sock = tmp_path / "bus"
    address = f"unix:path={sock}"
    bus = subprocess.Popen(
        [daemon, "--session", "--nofork", "--nopidfile", f"--address={address}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(sock.exists, what="session bus")
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
    mock = subprocess.Popen(
        ["/usr/bin/python3", "-m", "dbusmock", "--template", str(TEMPLATE)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: (
            subprocess.run(
                [
                    "gdbus",
                    "call",
                    "--session",
                    "--dest",
                    "org.gnome.Mutter.DisplayConfig",
                    "--object-path",
                    "/org/gnome/Mutter/DisplayConfig",
                    "--method",
                    "org.gnome.Mutter.DisplayConfig.GetCurrentState",
                ],
                env=env,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ),
        timeout=20,
        what="mock on the bus",
    )
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    yield address
    for proc in (mock, bus):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_mutter_apply_two_monitors(mutter_bus: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("display", {"backend": "mutter"})
    ctx.run_node(DisplayNode)
    first = wait_until(lambda: [b for d, t, b in ctx.casts if t == "input.geometry"], what="geometry")[0]
    assert first["monitors"] == [{"x": 0, "y": 0, "width": 1280, "height": 800}]
    body = {
        "num_of_monitors": 2,
        "flags": 1,
        "monitors": [
            {"width": 1024, "height": 768, "depth": 32, "x": 0, "y": 0},
            {"width": 1920, "height": 1080, "depth": 32, "x": 1024, "y": 0},
        ],
    }
    reply = ctx.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"], reply
    assert reply.body["monitors"] == [
        {"x": 0, "y": 0, "width": 1024, "height": 768},
        {"x": 1024, "y": 0, "width": 1920, "height": 1080},
    ]
    assert sent(ctx, "reply")[-1] == {"type": 2, "error": 1}


def test_mutter_refusal_is_an_error_reply(mutter_bus: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("display", {"backend": "mutter"})
    ctx.run_node(DisplayNode)
    body = {"num_of_monitors": 3, "flags": 0, "monitors": [{"width": 800, "height": 600}] * 3}
    reply = ctx.ask("spice.monitors_config", body)
    assert reply.ok and not reply.body["applied"]  # only two connectors
    assert sent(ctx, "reply")[-1] == {"type": 2, "error": 2}


def test_mutter_layout_changed_by_someone_else_is_reported(mutter_bus: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("display", {"backend": "mutter"})
    node = ctx.run_node(DisplayNode)
    wait_until(lambda: [b for d, t, b in ctx.casts if t == "input.geometry"], what="geometry")
    watched = node._watched  # type: ignore[attr-defined]
    assert watched is not None
    subprocess.run(  # as the Settings panel or a hotplug would
        [
            "gdbus",
            "call",
            "--session",
            "--dest",
            "org.gnome.Mutter.DisplayConfig",
            "--object-path",
            "/org/gnome/Mutter/DisplayConfig",
            "--method",
            "org.gnome.Mutter.DisplayConfig.ApplyMonitorsConfig",
            "2",
            "1",
            '[(0, 0, 1.0, 0, true, [("Meta-1", "1920x1080@60.000", @a{sv} {})])]',
            "@a{sv} {}",
        ],
        check=True,
        capture_output=True,
        env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=mutter_bus),
    )
    expected = {
        "monitors": [
            {"x": 0, "y": 0, "width": 0, "height": 0},
            {"x": 0, "y": 0, "width": 1920, "height": 1080},
        ]
    }

    def reported() -> bool:
        ctx.fire_fd(watched)  # the bridge's poll, by hand
        return [b for d, t, b in ctx.casts if t == "input.geometry"][-1] == expected

    wait_until(reported, what="geometry after MonitorsChanged")
