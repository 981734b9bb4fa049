"""Shared helpers for the lifecycle tests: loop-mounted filesystems the test owns, a blocked-writer
probe, a raw QGA client for the real qemu-ga, and a polling helper.

Only filesystems created here are ever frozen; cleanup always thaws, unmounts, detaches the
loop device and removes the image, even when the test failed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from concierge.testing.loopfs import can_loop_mount, loop_fs  # noqa: F401 - re-exported for the tests
from concierge.testing.peers import require_binary


def start_writer(directory: Path, name: str = "probe") -> subprocess.Popen[bytes]:
    """A child that creates a file in ``directory`` and fsyncs it: blocks while it is frozen."""
    code = (
        "import os,sys\n"
        "fd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o644)\n"
        "os.write(fd,b'x'*4096); os.fsync(fd); os.close(fd)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(directory / name)])


def writer_blocked(proc: subprocess.Popen[bytes], settle_s: float = 0.5) -> bool:
    """True when the writer has not finished after ``settle_s`` (it is stuck on a frozen fs)."""
    try:
        proc.wait(timeout=settle_s)
    except subprocess.TimeoutExpired:
        return True
    return False


def writer_finishes(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> bool:
    """True when the writer completes successfully within a generous bound."""
    try:
        return proc.wait(timeout=timeout_s) == 0
    except subprocess.TimeoutExpired:
        return False


def not_frozen(directory: Path, name: str = "check") -> bool:
    """A fresh writer on ``directory`` completes: nothing there is left frozen."""
    return writer_finishes(start_writer(directory, name))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, step_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passed (a bound, never a speed claim)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def make_script(path: Path, body: str) -> Path:
    """Write an executable shell script."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


class QgaClient:
    """Minimal raw client for a QGA unix socket (one JSON object per line)."""

    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + 10.0
        while True:  # the socket file appears at bind(), before listen(): retry a refused connect
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout_s)
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""

    def cmd(self, execute: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command and return the decoded reply object."""
        req: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("qemu-ga closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


@contextlib.contextmanager
def real_qemu_ga() -> Iterator[QgaClient]:
    """Run the stock qemu-ga on a private unix socket (no hook, private state dir)."""
    binary = require_binary("qemu-ga", "qemu-guest-agent")
    base = Path(tempfile.mkdtemp(prefix="cc-lifecycle-qga-"))
    sock = base / "qga.sock"
    proc = subprocess.Popen(
        [binary, "-m", "unix-listen", "-p", str(sock), "-t", str(base), "-f", str(base / "qemu-ga.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client: QgaClient | None = None
    try:
        assert wait_for(sock.exists, 10.0), "qemu-ga did not create its socket"
        client = QgaClient(str(sock))
        assert client.cmd("guest-sync", {"id": 7}) == {"return": 7}
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(OSError, ConnectionError):
                if client.cmd("guest-fsfreeze-status").get("return") == "frozen":
                    client.cmd("guest-fsfreeze-thaw")
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)
