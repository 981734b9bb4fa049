"""BallastNode: an actor whose memory a test controls, for the memory watermark tests.

``grow`` {"mb": n} keeps n MiB of written (resident, anonymous) memory, ``drop`` frees it,
``file.read`` stands for a bulk request (matches the default ``memory_bulk_types``), ``pid``
answers its pid. Injected by an ``entry`` line like every node of ``concierge.testing.nodes``.
"""

from __future__ import annotations

import os

from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler


class BallastNode(ServiceNode):
    """Holds ballast on request; answers small and bulk requests."""

    def on_start(self) -> None:
        self.ballast: list[bytes] = []

    @handler("grow")
    def grow(self, msg: Incoming) -> int:
        """Add ``mb`` MiB of resident memory (bytes are written, so the pages are real)."""
        self.ballast.extend(b"\x5a" * (1 << 20) for _ in range(int(msg.body["mb"])))
        return len(self.ballast)

    @handler("drop")
    def drop(self, _msg: Incoming) -> int:
        """Free the ballast."""
        self.ballast.clear()
        return 0

    @handler("file.read")
    def read(self, _msg: Incoming) -> str:
        """A bulk request: served unless the actor is over its soft watermark."""
        return "data"

    @handler("pid")
    def pid(self, _msg: Incoming) -> int:
        """A small request: always served."""
        return os.getpid()
