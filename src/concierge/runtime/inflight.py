"""Requests this process sent and is waiting on, with their deadlines.

Why a dict swept when the earliest may be due rather than a heap timer per request: a timer per
request cost ~3 µs of heap work apiece, and the sweep is rare (only when something is late).
Each entry remembers the lane socket its request went on (None: ZeroMQ, :data:`FOR_SUCCESSOR`:
ZeroMQ because nothing listened at the lane), so the requests a dead peer took with it can be
answered UNAVAILABLE at once while those queued for its successor keep waiting.
"""

from __future__ import annotations

import logging
import math
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from concierge.errors import ErrorCode
from concierge.runtime import envelope
from concierge.runtime.node import Reply

log = logging.getLogger("concierge.runtime.bridge")


class _Marker:
    __slots__ = ()


#: stands for the lane socket of a request that took ZeroMQ because no process listened at the
#: peer's lane: it cannot have reached a process that has died since
FOR_SUCCESSOR = _Marker()
#: what a request went on: a lane socket, ZeroMQ (None), or ZeroMQ for a successor
Via = socket.socket | _Marker | None


class InFlight:
    """Pending requests by message id; every method runs on the bridge thread."""

    __slots__ = ("_counters", "lane_waiting", "next_expiry", "pending")

    def __init__(self, counters: Counter[str]) -> None:
        self._counters = counters
        # id -> (on_reply, expires, dst, type, the lane socket it went on or None)
        self.pending: dict[int, tuple[Callable[[Reply], None], float, str, str, Via]] = {}
        self.next_expiry = math.inf
        #: requests sent on a lane and not answered yet (the bridge spins while there are any)
        self.lane_waiting = 0

    def __len__(self) -> int:
        return len(self.pending)

    def add(
        self,
        msg_id: int,
        on_reply: Callable[[Reply], None],
        *,
        expires: float,
        dst: str,
        type: str,
        sock: Via,
    ) -> None:
        """Remember a request sent on ``sock`` (None: ZeroMQ) until it is answered or due."""
        self.next_expiry = min(self.next_expiry, expires)
        self.pending[msg_id] = (on_reply, expires, dst, type, sock)
        if sock is not None and sock is not FOR_SUCCESSOR:
            self.lane_waiting += 1

    def finish(self, msg_id: int, reply: Reply) -> None:
        """Hand ``reply`` to the request's callback (a reply to nothing pending is counted)."""
        entry = self.pending.pop(msg_id, None)
        if entry is None:
            self._counters["reply.late"] += 1
            return
        if entry[4] is not None and entry[4] is not FOR_SUCCESSOR:
            self.lane_waiting -= 1
        try:
            entry[0](reply)
        except Exception:  # loop boundary: a reply callback bug must not stop the process loop
            log.exception("reply callback failed", extra={"event": "node.callback_failed"})
            self._counters["node.errors"] += 1

    def expire(self, now: float) -> None:
        """Answer TIMEOUT for every request past its time, then find the next expiry."""
        for msg_id in [k for k, entry in self.pending.items() if entry[1] <= now]:
            entry = self.pending.get(msg_id)
            if entry is None:  # a callback of this sweep finished it
                continue
            self._counters["request.timeout"] += 1
            message = f"{entry[2]} did not answer {entry[3]} in time"
            self.finish(msg_id, Reply(False, code=ErrorCode.TIMEOUT, message=message))
        self.next_expiry = min((entry[1] for entry in self.pending.values()), default=math.inf)

    def fail_lost(self, dst: str, lost: Callable[[Via], bool]) -> int:
        """Answer UNAVAILABLE for each request to ``dst`` whose transport ``lost`` says died
        with the peer; returns how many."""
        doomed = [k for k, entry in self.pending.items() if entry[2] == dst and lost(entry[4])]
        for msg_id in doomed:
            self._counters["request.peer_down"] += 1
            self.finish(msg_id, Reply(False, code=ErrorCode.UNAVAILABLE, message=f"{dst} stopped before it answered"))
        return len(doomed)


def reply_of(header: envelope.Header, body: Any, blobs: tuple[bytes, ...]) -> Reply:
    """The Reply a ``rep`` or ``err`` envelope stands for (unknown error codes: INTERNAL)."""
    if header.kind == "rep":
        return Reply(True, body=body, blobs=blobs)
    data = body if isinstance(body, dict) else {}
    code = data.get("code", "INTERNAL")
    return Reply(
        False,
        code=ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.INTERNAL,
        message=str(data.get("message", "")),
    )
