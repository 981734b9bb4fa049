"""Display effects actor against real gsettings + dconf on a private session bus."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import RecordingContext, wait_until

from concierge.actors.effects.node import EffectsNode
from concierge.testing.peers import require, require_binary

ALL = 1 | 2 | 4


@pytest.fixture()
def session_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    daemon = require_binary("dbus-daemon", "dbus")
    require_binary("gsettings", "libglib2.0-bin")
    require_binary("dconf", "dconf-cli")
    require(
        Path("/usr/share/glib-2.0/schemas/org.gnome.desktop.interface.gschema.xml").exists(),
        "GNOME schemas missing (apt install gsettings-desktop-schemas)",
    )
    home = tmp_path / "home"
    home.mkdir()
    sock = tmp_path / "bus"
    proc = subprocess.Popen(
        [daemon, "--session", "--nofork", "--nopidfile", f"--address=unix:path={sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HOME=str(home)),
    )
    wait_until(sock.exists, what="session bus")
    for name, value in {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={sock}",
        "GSETTINGS_BACKEND": "dconf",
    }.items():
        monkeypatch.setenv(name, value)
    yield home
    # dconf-service was bus-activated: it exits with the bus
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def gget(schema: str, key: str) -> str:
    return subprocess.run(["gsettings", "get", schema, key], capture_output=True, text=True, check=True).stdout.strip()


def user_dump() -> str:
    return subprocess.run(["dconf", "dump", "/org/gnome/desktop/"], capture_output=True, text=True, check=True).stdout


def test_apply_and_restore_on_disconnect(session_bus: Path, session_ctx: Any) -> None:
    subprocess.run(["gsettings", "set", "org.gnome.desktop.interface", "font-antialiasing", "rgba"], check=True)
    before = user_dump()
    ctx: RecordingContext = session_ctx("effects")
    ctx.run_node(EffectsNode)
    reply = ctx.ask("spice.display_config", {"flags": ALL | 8, "depth": 16})
    assert reply.ok, reply.message
    assert sorted(reply.body["applied"]) == ["animation", "font_smoothing", "wallpaper"]
    assert reply.body["unsupported"] == ["color_depth"]
    assert gget("org.gnome.desktop.interface", "enable-animations") == "false"
    assert gget("org.gnome.desktop.interface", "font-antialiasing") == "'none'"
    assert gget("org.gnome.desktop.background", "picture-options") == "'none'"
    ctx.tell("spice.client_disconnected", {})
    wait_until(lambda: not ctx.ask("effects.state").body["active"], what="restored")
    assert user_dump() == before  # user value back, defaults reset (not pinned)
    assert gget("org.gnome.desktop.interface", "enable-animations") == "true"


def test_restore_on_stop(session_bus: Path) -> None:
    from concierge.testing.context import FakeContext

    before = user_dump()
    ctx = FakeContext("effects")
    ctx.run_node(EffectsNode)
    assert ctx.ask("spice.display_config", {"flags": 4}).ok
    assert gget("org.gnome.desktop.interface", "enable-animations") == "false"
    ctx.close()
    assert user_dump() == before


def test_killed_agent_restores_at_next_start(session_bus: Path, session_ctx: Any) -> None:
    before = user_dump()
    ctx: RecordingContext = session_ctx("effects")
    node = ctx.run_node(EffectsNode)
    assert ctx.ask("spice.display_config", {"flags": 1}).ok
    assert gget("org.gnome.desktop.background", "picture-options") == "'none'"
    node.on_stop = lambda: None  # type: ignore[method-assign]  # as if killed: no restore
    journal = session_bus / ".state" / "concierge" / "effects-restore.json"
    assert journal.exists()
    again: RecordingContext = session_ctx("effects")
    again.run_node(EffectsNode)
    wait_until(lambda: not journal.exists(), what="journal replayed")
    assert user_dump() == before


def test_no_gnome_settings_is_reported_unsupported(session_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ctx: RecordingContext = session_ctx("effects", {"journal": "/nonexistent/j.json"})
    ctx.run_node(EffectsNode)
    reply = ctx.ask("spice.display_config", {"flags": ALL})
    assert reply.ok and reply.body["applied"] == []
    assert ctx.health[0] == "degraded"
