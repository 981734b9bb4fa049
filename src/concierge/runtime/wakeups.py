"""Asking the supervisor to start a dormant peer (on-demand actors).

A request whose target has no lane (nothing listens at its socket) may be for an on-demand actor
that is not started yet or was stopped as idle. The bridge then sends the supervisor ``want
<actor>`` and the request waits in ZeroMQ's queue for the actor's inbox, bounded by its own
deadline. Asked at most every 0.25 s per peer, for at most 64 distinct peers remembered at once
(peer names come from node code, but the table is bounded anyway).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: a request to a peer without a lane asks the supervisor to wake it at most this often
WAKE_EVERY_S = 0.25
WAKE_PEERS_MAX = 64


class WakeRequests:
    """Rate-limits ``want`` messages per peer; ``send`` runs on the bridge thread."""

    __slots__ = ("_send", "_woken")

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        self._woken: dict[str, float] = {}

    def want(self, dst: str) -> None:
        now = time.monotonic()
        if now - self._woken.get(dst, -math.inf) < WAKE_EVERY_S:
            return
        if len(self._woken) >= WAKE_PEERS_MAX:
            self._woken.clear()
        self._woken[dst] = now
        self._send(dst)
