"""Turning connections away cheaply: the reject sent at accept, and warnings that do not flood.

A local user can open connections as fast as the kernel lets them; each refusal must cost the
root gateway one non-blocking write and one close, and the journal at most one line per uid
and poll period. Standard library only (plus the frame encoder).
"""

from __future__ import annotations

import contextlib
import socket

from concierge.actors.session import framing


def refuse(sock: socket.socket, reason: str) -> None:
    """Tell a connection why it is refused, without blocking; the caller closes it."""
    with contextlib.suppress(OSError):
        sock.send(framing.encode("reject", {"reason": reason}), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)


class WarningThrottle:
    """One warning per uid until :meth:`new_period` (the gateway calls it every poll)."""

    def __init__(self) -> None:
        self._warned: set[int] = set()

    def first(self, uid: int) -> bool:
        """True the first time ``uid`` is seen in this period."""
        first = uid not in self._warned
        self._warned.add(uid)
        return first

    def new_period(self) -> None:
        """Forget who was warned about."""
        self._warned.clear()
