"""AgentHarness: a real ``concierge run`` in a temporary runtime dir, driven through the real CLI.

Tests describe the actor catalog in TOML (fakes from :mod:`concierge.testing.nodes` or real
actors); the harness disables every built-in actor they do not mention.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from concierge.config.loader import defaults_text

BUILTIN_IDS = tuple(tomllib.loads(defaults_text())["actors"])


def catalog(actors: dict[str, dict[str, Any]], *, extra: str = "") -> str:
    """TOML for a config running exactly ``actors`` (id -> table of ActorSection keys).

    Each listed actor runs from the agent's start unless its table says otherwise: a built-in
    id would otherwise inherit the shipped ``activation``/``requires`` (on demand, or no
    channel) and a test would not run what it describes."""
    neutral = {"activation": "always", "idle_stop_s": 0.0, "requires": []}
    actors = {actor_id: {**neutral, **table} for actor_id, table in actors.items()}
    lines = []
    for actor_id in BUILTIN_IDS:
        if actor_id not in actors:
            lines += [f"[actors.{actor_id}]", "enabled = false", ""]
    for actor_id, table in actors.items():
        lines.append(f"[actors.{actor_id}]")
        settings = table.get("settings", {})
        for key, value in table.items():
            if key != "settings":
                lines.append(f"{key} = {json.dumps(value)}")
        if settings:
            lines.append(f"[actors.{actor_id}.settings]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        lines.append("")
    return "\n".join(lines) + "\n" + extra


class AgentHarness:
    """Starts, inspects and stops one supervisor process."""

    def __init__(
        self, root: Path, config_text: str, *, args: Iterable[str] = (), env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.runtime_dir = root / "run"
        self.config_path = root / "concierge.toml"
        self.config_path.write_text(config_text)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        src = str(Path(__file__).resolve().parents[2])
        self.env["PYTHONPATH"] = src + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.setdefault("CONCIERGE_LOG_LEVEL", "info")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "agent.log"

    def start(self, *, wait: bool = True, timeout_s: float = 20.0) -> None:
        """Run the supervisor; with ``wait``, until every enabled actor is RUNNING (or DORMANT:
        not needed on this guest until a request for it)."""
        cmd = [
            sys.executable,
            "-m",
            "concierge",
            "--runtime-dir",
            str(self.runtime_dir),
            "run",
            "--config",
            str(self.config_path),
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=self.env)
        if wait:
            try:
                self.wait_for(
                    lambda s: all(a["state"] in ("RUNNING", "DORMANT") for a in s["actors"]),
                    timeout_s,
                    "all actors RUNNING or DORMANT",
                )
            except BaseException:
                self.stop()  # never leave an agent behind when a test's set-up fails
                raise

    def cli(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the real ``concierge`` CLI against this agent."""
        cmd = [sys.executable, "-m", "concierge", "--runtime-dir", str(self.runtime_dir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout_s, check=False)

    def status(self) -> dict[str, Any]:
        """``concierge status --json`` parsed (raises if the agent is unreachable)."""
        result = self.cli("--json", "status")
        if result.returncode not in (0, 4):
            raise RuntimeError(f"status failed ({result.returncode}): {result.stderr}")
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def actor(self, actor_id: str) -> dict[str, Any]:
        """One actor's status entry."""
        return next(a for a in self.status()["actors"] if a["id"] == actor_id)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, what: str) -> dict[str, Any]:
        """Poll status until ``predicate`` holds; raise with the last status otherwise."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | Exception = RuntimeError("never answered")
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode} waiting for {what}:\n{self.log_tail()}")
            try:
                last = self.status()
                if predicate(last):
                    return last
            except (RuntimeError, ValueError) as err:
                last = err
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}; last status: {last}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the agent's output, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM the supervisor and wait; SIGKILL if it does not go."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
