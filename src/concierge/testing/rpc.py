"""ActorClient: talk to a running agent's actors over the real data plane (tests, benchmarks).

It behaves like an actor without an inbox: one DEALER per destination, requests with
deadlines, replies matched by id.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import zmq

from concierge.errors import ErrorCode
from concierge.runtime import envelope, sockets
from concierge.runtime.endpoints import RuntimeLayout
from concierge.runtime.node import Reply


class ActorClient:
    """Send requests and casts to actors of the agent at ``runtime_dir``."""

    def __init__(self, runtime_dir: Path, name: str = "client") -> None:
        self.layout = RuntimeLayout(runtime_dir)
        self.name = name
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._dealers: dict[str, zmq.Socket[bytes]] = {}
        self._ids = itertools.count(1)

    def _dealer(self, dst: str) -> zmq.Socket[bytes]:
        sock = self._dealers.get(dst)
        if sock is None:
            sock = sockets.dealer(self.ctx, self.layout.url(self.layout.inbox(dst)), self.name)
            self._dealers[dst] = sock
        return sock

    def request(self, dst: str, type_: str, body: Any = None, *, timeout_s: float = 5.0) -> Reply:
        """Send a request and wait for its reply (TIMEOUT reply if none)."""
        msg_id = next(self._ids)
        header = envelope.Header("req", type_, msg_id, 0, self.name, dst, time.monotonic_ns() + int(timeout_s * 1e9))
        sock = self._dealer(dst)
        sock.send_multipart(envelope.encode(header, body))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                break
            rep, rbody, blobs = envelope.decode(sock.recv_multipart())
            if rep.corr != msg_id:
                continue
            if rep.kind == "rep":
                return Reply(True, body=rbody, blobs=blobs)
            return Reply(False, code=ErrorCode(rbody.get("code", "INTERNAL")), message=rbody.get("message", ""))
        return Reply(False, code=ErrorCode.TIMEOUT, message="no reply")

    def cast(self, dst: str, type_: str, body: Any = None, *, ttl_s: float = 5.0) -> None:
        """Send a one-way message."""
        header = envelope.Header(
            "cast", type_, next(self._ids), 0, self.name, dst, time.monotonic_ns() + int(ttl_s * 1e9)
        )
        self._dealer(dst).send_multipart(envelope.encode(header, body))

    def close(self) -> None:
        """Close every socket, giving queued casts a moment to leave."""
        for sock in self._dealers.values():
            sock.close(linger=500)
        self.ctx.term()

    def __enter__(self) -> ActorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
