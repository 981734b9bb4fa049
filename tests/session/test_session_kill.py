"""kill -9 of session actors: nothing stale is left, and the next instance recovers
(guest clipboard ownership re-announced, the user's settings restored)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from session_helpers import wait_until

from concierge.testing.peers import require_binary

RUNNER = Path(__file__).with_name("session_node_runner.py")
SRC = Path(__file__).resolve().parents[2] / "src"


class NodeProcess:
    """A node in a child process, fed casts on stdin, its casts read from stdout."""

    def __init__(self, target: str, actor: str, settings: dict[str, Any], env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER), target, actor, json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(env or os.environ, PYTHONPATH=str(SRC)),
        )
        self.lines: queue.Queue[Any] = queue.Queue()
        self.seen: list[Any] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda m: m == "ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, pred: Any, timeout: float = 20) -> Any:
        def check() -> Any:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return next((m for m in self.seen if pred(m)), None)

        return wait_until(check, timeout=timeout, what="message from the node process")

    def tell(self, type_: str, body: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"type": type_, "body": body}) + "\n")
        self.proc.stdin.flush()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def is_grab(sel: int) -> Any:
    return lambda m: (
        isinstance(m, dict)
        and m["type"] == "spice.send"
        and m["body"]["type"] == "clipboard_grab"
        and m["body"]["body"]["selection"] == sel
    )


def test_clipboard_kill9_then_restart(xvfb: str) -> None:
    require_binary("xclip", "xclip")
    settings = {"backend": "x11", "x11_display": xvfb}
    node = NodeProcess("concierge.actors.clipboard.node:ClipboardNode", "clipboard", settings)
    owner = None
    try:
        node.tell("spice.clipboard_grab", {"selection": 0, "types": [1]})
        targets = ["xclip", "-d", xvfb, "-o", "-selection", "clipboard", "-t", "TARGETS"]
        wait_until(
            lambda: b"text/plain;charset=utf-8" in subprocess.run(targets, capture_output=True, check=False).stdout
        )
        node.kill9()  # the client's ownership dies with the process: no stale owner in X
        wait_until(
            lambda: b"text/plain;charset=utf-8" not in subprocess.run(targets, capture_output=True, check=False).stdout
        )
        owner = subprocess.Popen(
            ["xclip", "-d", xvfb, "-quiet", "-i", "-selection", "primary"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert owner.stdin is not None
        owner.stdin.write(b"owned while the agent was down")
        owner.stdin.close()
        wait_until(
            lambda: (
                subprocess.run(
                    ["xclip", "-d", xvfb, "-o", "-selection", "primary"],
                    capture_output=True,
                    check=False,
                ).stdout
                == b"owned while the agent was down"
            )
        )
        again = NodeProcess("concierge.actors.clipboard.node:ClipboardNode", "clipboard", settings)
        try:
            grab = again.wait_for(is_grab(1))
            assert 1 in grab["body"]["body"]["types"]  # ownership re-announced after the restart
        finally:
            again.close()
    finally:
        node.close()
        if owner is not None:
            owner.kill()
            owner.wait()


def test_effects_kill9_restores_at_restart(tmp_path: Path) -> None:
    """With gsettings' keyfile backend (no bus needed), a kill -9 between apply and restore
    leaves the journal; the next instance restores the user's value."""
    require_binary("gsettings", "libglib2.0-bin")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".state"),
        GSETTINGS_BACKEND="keyfile",
    )
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    def get() -> str:
        return subprocess.run(
            ["gsettings", "get", "org.gnome.desktop.interface", "enable-animations"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert get() == "true"
    node = NodeProcess("concierge.actors.effects.node:EffectsNode", "effects", {}, env)
    node.tell("spice.display_config", {"flags": 4})
    wait_until(lambda: get() == "false", what="animations off")
    node.kill9()
    assert get() == "false"
    again = NodeProcess("concierge.actors.effects.node:EffectsNode", "effects", {}, env)
    try:
        wait_until(lambda: get() == "true", what="restored by the next instance")
        wait_until(lambda: not (home / ".state" / "concierge" / "effects-restore.json").exists())
    finally:
        again.close()
