"""Operator socket client: one DEALER, a request id, a timeout; never hangs on a stuck agent."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from concierge.runtime.endpoints import RuntimeLayout


class UnreachableError(Exception):
    """The agent did not answer (not running, no permission, or timed out)."""


class ControlClient:
    """Talks JSON to the supervisor's operator socket."""

    def __init__(self, runtime_dir: Path, timeout_s: float = 5.0) -> None:
        self.layout = RuntimeLayout(runtime_dir)
        self.timeout_ms = int(timeout_s * 1000)
        path = self.layout.ctl
        if not path.exists():
            raise UnreachableError(f"no agent socket at {path}")
        if not os.access(path, os.W_OK):
            raise UnreachableError(f"permission denied on {path} (root or the admin group only)")
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.layout.url(path))
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big"))

    def stream(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Send a request and yield its replies until one without ``more``."""
        req_id = next(self._ids)
        self.sock.send(json.dumps({"v": 1, "id": req_id, "cmd": cmd, "args": args or {}}).encode())
        timeout_ms = int(timeout_s * 1000) if timeout_s is not None else self.timeout_ms
        while True:
            if not self.sock.poll(timeout_ms):
                raise UnreachableError("the agent did not answer in time")
            reply = json.loads(self.sock.recv())
            if reply.get("id") != req_id:
                continue
            yield reply
            if not reply.get("more"):
                return

    def call(self, cmd: str, args: dict[str, Any] | None = None, *, timeout_s: float | None = None) -> dict[str, Any]:
        """One request, one reply."""
        for reply in self.stream(cmd, args, timeout_s=timeout_s):
            return reply
        raise UnreachableError("no reply")

    def close(self) -> None:
        """Release the socket."""
        self.sock.close(0)
        self.ctx.term()
