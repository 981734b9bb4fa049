"""Harness of the guestops tests: the real qemu-ga, our node behind a QGA-shaped client,
throwaway users, and a log capture that the secret-leak checks search.

A uniquely named module (not conftest) so that ``import`` never picks another area's
conftest; ``conftest.py`` only re-exports the fixtures."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.actors.guestops.node import GuestOpsNode
from concierge.errors import ErrorCode
from concierge.logs import JsonFormatter
from concierge.testing.context import FakeContext
from concierge.testing.peers import require, require_binary
from concierge.transport.qga.commands.guestops import ROUTES

ROUTE_BY_COMMAND = {route.command: route for route in ROUTES}


class QgaSocketClient:
    """Raw JSON over the real qemu-ga's unix socket, one reply line per request."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        deadline = time.monotonic() + 10
        while True:  # the socket file exists a moment before qemu-ga listens on it
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.reader = self.sock.makefile("rb")

    def cmd(self, execute: str, **arguments: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"execute": execute}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode())
        reply: dict[str, Any] = json.loads(self.reader.readline())
        return reply

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class OurClient:
    """Our node through the QGA routes, rendered the way the QGA front-end does."""

    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    def cmd(self, execute: str, **arguments: Any) -> dict[str, Any]:
        route = ROUTE_BY_COMMAND[execute]
        reply = self.ctx.ask(route.request, route.to_request(arguments), timeout_s=route.timeout_s)
        if reply.ok:
            return {"return": route.render(reply.body)}
        klass = "CommandNotFound" if reply.code == ErrorCode.FORBIDDEN else "GenericError"
        return {"error": {"class": klass, "desc": reply.message}}


def start_qemu_ga(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the real qemu-ga on a unix socket under ``tmp``; returns it and the socket path."""
    binary = require_binary("qemu-ga", "qemu-guest-agent")
    state = tmp / "qga-state"
    state.mkdir(exist_ok=True)
    sock = str(tmp / "qga.sock")
    proc = subprocess.Popen(
        [binary, "-m", "unix-listen", "-p", sock, "-t", str(state), "-f", str(state / "pid"), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("qemu-ga did not start")
        time.sleep(0.01)
    return proc, sock


@pytest.fixture
def qga(tmp_path: Path) -> Iterator[QgaSocketClient]:
    """The real qemu-ga (skips on a laptop, fails in CI when absent)."""
    require(os.geteuid() == 0, "qemu-ga differential tests need root")
    proc, sock = start_qemu_ga(tmp_path)
    try:
        client = QgaSocketClient(sock)
    except OSError:
        proc.kill()
        proc.wait()
        raise
    yield client
    client.close()
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        # seen now and then after guest-exec: qemu-ga 7.2 has SIGTERM blocked (SigBlk) and stays up;
        # a quirk of the stock agent, not what these tests are about
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        proc.kill()
        proc.wait()
        warnings.warn(f"qemu-ga ignored SIGTERM (wchan={wchan}); killed", stacklevel=1)


def make_ours(state_dir: Path, **settings: Any) -> tuple[FakeContext, OurClient]:
    """A GuestOpsNode in a FakeContext with its state in ``state_dir``."""
    ctx = FakeContext("guestops", {"state_dir": str(state_dir), **settings})
    ctx.run_node(GuestOpsNode)
    return ctx, OurClient(ctx)


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[OurClient]:
    """Our node with default (drop-in) settings."""
    ctx, client = make_ours(tmp_path / "ours-state")
    yield client
    ctx.close()


@pytest.fixture
def user() -> Iterator[str]:
    """A throwaway local user with a home directory, removed afterwards."""
    require(os.geteuid() == 0, "user tests need root")
    require_binary("useradd", "passwd")
    name = f"cgo{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    yield name
    subprocess.run(["userdel", "-r", "-f", name], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- log capture for the secret-leak checks ------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter("guestops"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


_CAPTURE = _Capture()
#: every password and key material the tests use; none may ever reach a log line
SECRETS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def log_capture() -> Iterator[_Capture]:
    """Capture every record of the session at DEBUG; check secrets at the end too."""
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(_CAPTURE)
    root.setLevel(logging.DEBUG)
    yield _CAPTURE
    root.removeHandler(_CAPTURE)
    root.setLevel(old_level)
    text = "\n".join(_CAPTURE.lines)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"secrets in logs: {len(leaked)}"


def audit_lines() -> list[dict[str, Any]]:
    """Parsed audit records captured so far."""
    out = []
    for line in _CAPTURE.lines:
        data = json.loads(line)
        if data.get("event") == "guestops.audit":
            out.append(data)
    return out


def all_log_text() -> str:
    """Every captured log line so far."""
    return "\n".join(_CAPTURE.lines)
