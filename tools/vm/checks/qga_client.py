"""A minimal QGA client over the host end of the virtio-serial port (a unix socket).

It resynchronises first with ``guest-sync-delimited`` (stale replies meant for an earlier
client may still sit in QEMU's buffer; the agent answers the 0xFF flush byte and the sync id),
then sends one JSON object per request and reads one line per reply.
"""

from __future__ import annotations

import json
import random
import socket
import time
from pathlib import Path
from typing import Any


class QgaError(Exception):
    """The agent answered with an error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('class')}: {error.get('desc')}")
        self.error = error


class QgaClient:
    """One connection to a QGA port; blocking, with per-call timeouts."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> QgaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from the agent")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("port closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def sync(self, timeout: float | None = None) -> int:
        """guest-sync-delimited handshake: discard everything up to our id's reply."""
        ident = random.randrange(1, 2**31)
        deadline = time.monotonic() + (timeout or self.timeout)
        self.sock.sendall(
            b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": ident}}).encode()
        )
        while True:
            line = self._line(deadline)
            if b"\xff" in line:
                line = line.rsplit(b"\xff", 1)[1]
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("return") == ident:
                return ident

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply object (skips blank lines)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self._line(deadline).strip().lstrip(b"\xff")
            if line:
                reply: dict[str, Any] = json.loads(line)
                return reply

    def execute_raw(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one command; return the whole reply object (``return`` or ``error``)."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        return self.read_reply(timeout)

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Send one command; return its ``return`` value or raise :class:`QgaError`."""
        reply = self.execute_raw(command, arguments, timeout)
        if "error" in reply:
            raise QgaError(reply["error"])
        return reply.get("return")

    def send_no_reply(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        """For guest-shutdown and friends, which answer nothing on success."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")

    def run(self, argv: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
        """guest-exec a command and wait for it: (exit code, stdout, stderr)."""
        import base64

        pid = self.execute("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.execute("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                return int(status.get("exitcode", -1)), out, err
            time.sleep(0.05)
        raise TimeoutError(f"guest-exec {argv} did not finish in {timeout} s")
